"""Readers and listing of training/evaluation images, on real files written to tmp_path."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import needs_shared
from mlin_qgis.ml.images import list_images, load_image

try:
    from mlin_qgis.core.errors import MlinError
    USER_ERRORS: tuple[type[Exception], ...] = (MlinError,)
except ImportError:
    USER_ERRORS = (ValueError, FileNotFoundError)

SHARED = Path(__file__).resolve().parents[2] / "shared"
UCM = SHARED / "data" / "ucmerced"


def _rng_image(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, c), dtype=np.uint8)


def test_rgb_png_odd_size_round_trip(tmp_path: Path) -> None:
    rgb = _rng_image(242, 257, 3)
    Image.fromarray(rgb).save(tmp_path / "odd.png")
    out = load_image(tmp_path / "odd.png")
    assert out.shape == (242, 257, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, rgb)
    out[0, 0, 0] = 7  # the array must be writable (torch.from_numpy warns otherwise)


def test_tif_rgb(tmp_path: Path) -> None:
    rgb = _rng_image(31, 17, 3, seed=1)
    Image.fromarray(rgb).save(tmp_path / "a.TIF")
    np.testing.assert_array_equal(load_image(tmp_path / "a.TIF"), rgb)


def test_greyscale_replicated(tmp_path: Path) -> None:
    grey = _rng_image(20, 30, 1, seed=2)[:, :, 0]
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (20, 30, 3)
    for band in range(3):
        np.testing.assert_array_equal(out[:, :, band], grey)


def test_rgba_alpha_dropped(tmp_path: Path) -> None:
    rgba = _rng_image(12, 13, 4, seed=3)
    rgba[..., 3] = 0  # fully transparent: colour must still come through unchanged
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    np.testing.assert_array_equal(out, rgba[..., :3])


def test_la_alpha_dropped(tmp_path: Path) -> None:
    la = _rng_image(9, 11, 2, seed=4)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png")
    np.testing.assert_array_equal(out, np.repeat(la[:, :, :1], 3, axis=2))


def test_16bit_png_scaled(tmp_path: Path) -> None:
    wide = np.array([[0, 257, 65535], [1000, 32768, 65280]], dtype=np.uint16)
    Image.fromarray(wide).save(tmp_path / "w.png")
    with Image.open(tmp_path / "w.png") as img:
        assert img.mode.startswith("I")  # really a 16-bit file
    out = load_image(tmp_path / "w.png")
    expected = np.round(wide / 257.0).astype(np.uint8)  # 0, 1, 255, 4, 128, 254
    np.testing.assert_array_equal(out[:, :, 0], expected)
    np.testing.assert_array_equal(out[:, :, 2], expected)


def test_palette_converted(tmp_path: Path) -> None:
    index = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    img = Image.fromarray(index, mode="P")
    img.putpalette([255, 0, 0, 0, 255, 0, 10, 20, 30] + [0] * (256 * 3 - 9))
    img.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [0, 255, 0])
    np.testing.assert_array_equal(out[1, 0], [10, 20, 30])


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(USER_ERRORS, match="cannot read image"):
        load_image(bad)
    with pytest.raises(USER_ERRORS, match="does not exist"):
        load_image(tmp_path / "nope.png")


def _make_tree(root: Path, layout: dict[str, list[str]]) -> None:
    for cls, names in layout.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            arr = _rng_image(8, 8, 3, seed=i)
            fmt = "JPEG" if name.lower().endswith((".jpg", ".jpeg")) else None
            Image.fromarray(arr).save(root / cls / name, format=fmt)


def test_list_whu_style_jpg_folder(tmp_path: Path) -> None:
    _make_tree(tmp_path, {"Airport": ["airport_01.jpg", "airport_02.JPG"], "Beach": ["beach_01.jpeg"]})
    (tmp_path / "Beach" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    Image.fromarray(_rng_image(4, 4, 3)).save(tmp_path / ".hidden" / "x.png")
    found = list_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "Airport/airport_01.jpg", "Airport/airport_02.JPG", "Beach/beach_01.jpeg"]
    assert load_image(found[0]).shape == (8, 8, 3)


def test_list_flat_folder_sorted(tmp_path: Path) -> None:
    for name in ["c.bmp", "a.png", "b.tiff"]:
        Image.fromarray(_rng_image(4, 4, 3)).save(tmp_path / name)
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.tiff", "c.bmp"]


def test_split_file_filtering(tmp_path: Path) -> None:
    _make_tree(tmp_path / "val", {"beach": ["beach01.png", "beach02.png"], "forest": ["forest01.png"]})
    split = {"train": ["beach/beach02.png"], "val": ["beach/beach01.png", "forest/forest01.png"],
             "test_held_out": ["forest/forest99.png"]}
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps(split))
    # root may be the split's folder or the dataset root holding <split>/<class>/...
    via_split_dir = list_images(tmp_path / "val", split="val", split_file=split_file)
    via_root = list_images(tmp_path, split="val", split_file=split_file)
    assert [p.name for p in via_split_dir] == ["beach01.png", "forest01.png"]
    assert via_root == via_split_dir
    assert [p.name for p in list_images(tmp_path / "val", "train", split_file)] == ["beach02.png"]
    with pytest.raises(USER_ERRORS, match="no images listed under 'test_held_out'"):
        list_images(tmp_path / "val", "test_held_out", split_file)  # listed but absent
    with pytest.raises(USER_ERRORS, match="choose one of"):
        list_images(tmp_path / "val", "nope", split_file)
    with pytest.raises(USER_ERRORS, match="go together"):
        list_images(tmp_path / "val", split="val")


def test_empty_and_missing_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty" / "class").mkdir(parents=True)
    (tmp_path / "empty" / "class" / "readme.txt").write_text("x")
    with pytest.raises(USER_ERRORS, match="no images"):
        list_images(tmp_path / "empty")
    with pytest.raises(USER_ERRORS, match="does not exist"):
        list_images(tmp_path / "missing")


@needs_shared(UCM / "split.json")
def test_shared_ucmerced_val_split() -> None:
    found = list_images(UCM / "val", split="val", split_file=UCM / "split.json")
    assert len(found) == 210
    assert load_image(found[0]).shape[2] == 3
