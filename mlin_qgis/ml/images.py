"""Finding and reading the RGB training/evaluation images (UCMerced, WHU-RS19, any folder).

One reader for the whole learning side, so training, validation and evaluation see the same pixels:
always uint8 (H, W, 3), whatever the file stores (grey, palette, alpha, 16-bit).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mlin_qgis.core.errors import DataError

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp"})


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _walk_images(root: Path) -> list[Path]:
    """All image files under root (flat folder or <root>/<class>/...), hidden folders skipped."""
    found = []
    for path in root.rglob("*"):
        rel_parts = path.relative_to(root).parts
        if any(part.startswith(".") for part in rel_parts):
            continue
        if _is_image(path):
            found.append(path)
    return found


def _read_split(split_file: Path, split: str) -> list[str]:
    if not split_file.is_file():
        raise DataError(
            f"split file {split_file} does not exist; pass the JSON that lists the splits "
            "(e.g. shared/data/ucmerced/split.json)")
    try:
        table = json.loads(split_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"split file {split_file} is not readable JSON ({exc}); fix or replace it") from exc
    if not isinstance(table, dict) or split not in table:
        keys = sorted(table) if isinstance(table, dict) else []
        raise DataError(f"split {split!r} is not in {split_file}; choose one of {keys}")
    entries = table[split]
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise DataError(f"split {split!r} in {split_file} must be a list of relative paths like 'class/file.png'")
    return entries


def list_images(root: str | Path, split: str | None = None, split_file: str | Path | None = None) -> list[Path]:
    """Sorted image paths under `root`, optionally only those a split file lists for `split`.

    Split entries are paths relative to the class folders ("class/file.png"); they are looked up both
    under `root` and under `root/<split>` so that `root` may be the split's folder or the dataset's.
    Listed files that are absent are skipped (shared/ deliberately lacks the held-out test images).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; pass a folder of images "
                         "(flat, or <root>/<class>/*.png|tif|jpg)")
    if (split is None) != (split_file is None):
        raise DataError("split and split_file go together: give both (e.g. --split val --split-file split.json) "
                         "or neither")
    if split is None or split_file is None:  # both or neither (checked above)
        images = _walk_images(root)
    else:
        images = []
        for rel in _read_split(Path(split_file), split):
            for candidate in (root / rel, root / split / rel):
                if _is_image(candidate):
                    images.append(candidate)
                    break
    if not images:
        what = f"listed under {split!r} in {split_file}" if split is not None else \
            f"with extensions {sorted(IMAGE_EXTENSIONS)}"
        raise DataError(f"no images {what} found in {root}; check the folder and split")
    return sorted(set(images))


def _to_uint8(array: np.ndarray, mode: str, path: Path) -> np.ndarray:
    """Scale integer/float pixel arrays from Pillow's wide modes to 8 bits."""
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.integer):
        # Pillow gives 16-bit files as I;16* (uint16) or I (int32 holding 0..65535).
        wide = np.clip(array.astype(np.float64), 0, 65535)
        return np.round(wide / 257.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        finite = array[np.isfinite(array)]
        top = float(finite.max()) if finite.size else 0.0
        scale = 255.0 if top <= 1.0 else 1.0  # [0,1] floats or already 0..255
        return np.round(np.clip(np.nan_to_num(array) * scale, 0, 255)).astype(np.uint8)
    raise DataError(f"{path}: pixel mode {mode!r} is not supported; convert it to 8-bit RGB")


def load_image(path: str | Path) -> np.ndarray:
    """Read an image as uint8 (H, W, 3): grey replicated, alpha dropped, 16-bit scaled, palette expanded."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image {path} does not exist; check the path")
    try:
        with Image.open(path) as opened:
            opened.load()
            img: Image.Image = opened
            mode = img.mode
            if mode in ("P", "PA", "1", "CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("RGBA" if mode == "PA" or "transparency" in img.info else "RGB")
                mode = img.mode
            if mode == "LA":
                img = img.getchannel("L")
                mode = "L"
            array = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"cannot read image {path} ({exc}); it is damaged or not an image format "
                         "Pillow reads (png, tif, jpg, bmp)") from exc
    array = _to_uint8(array, mode, path)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] >= 3:
        array = array[:, :, :3]  # RGBA / RGBX: drop the fourth band
    else:
        raise DataError(f"{path}: unexpected pixel layout {array.shape}; convert it to RGB")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"{path}: image is empty")
    return np.array(array, dtype=np.uint8, order="C", copy=True)  # writable, owned by the caller
