"""Halo tiling: every output pixel answered once, and tiled == whole-image inference."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, skip_without_shared, smooth_image
from mlin_qgis.core.engine import SuperResolver
from mlin_qgis.core.tiling import HALO_EXTRA, halo_for, nearest_index, output_size, owner_index, plan_tiles, query_coords


@pytest.mark.parametrize("n_in, n_out", [(40, 108), (52, 172), (7, 8), (1, 3), (13, 13 * 5), (100, 271)])
def test_integer_indices_match_float_formulas(n_in: int, n_out: int) -> None:
    coords = query_coords(n_in, n_out)
    assert np.array_equal(owner_index(n_in, n_out), np.clip(np.floor(coords + 1e-12), 0, n_in - 1))
    assert np.array_equal(nearest_index(n_in, n_out), np.clip(np.floor(coords + 0.5 + 1e-12), 0, n_in - 1))
    assert coords[0] == pytest.approx(0.5 * n_in / n_out - 0.5)


@pytest.mark.parametrize("shape, scale, tile", [((40, 52), 2.7, 8), ((40, 52), 3.3, 13), ((17, 5), 2.0, 4),
                                                 ((9, 9), 1.5, 1), ((40, 52), 2.7, None)])
def test_plan_covers_every_output_pixel_once(shape, scale, tile) -> None:
    out = output_size(shape, scale)
    count = np.zeros(out, np.int32)
    for t in plan_tiles(shape, out, tile, halo=5):
        count[t.rows.out_start:t.rows.out_stop, t.cols.out_start:t.cols.out_stop] += 1
        for span, n in ((t.rows, shape[0]), (t.cols, shape[1])):
            assert 0 <= span.read_start <= span.core_start < span.core_stop <= span.read_stop <= n
            assert span.core_start - span.read_start == min(5, span.core_start)
            owners = owner_index(n, out[0] if span is t.rows else out[1], span.out_start, span.out_stop)
            assert owners.min() >= span.core_start and owners.max() < span.core_stop
    assert (count == 1).all()


def test_output_size_rounds_per_axis() -> None:
    assert output_size((40, 52), 2.7) == (108, 140)
    assert output_size((40, 52), 3.3) == (132, 172)


@pytest.mark.parametrize("scale", [2.7, 3.3, 2.0, 3.0])
def test_tiled_equals_whole_image_tiny_model(tiny_model: Path, scale: float) -> None:
    sr = SuperResolver(tiny_model, device="cpu")
    image = smooth_image(40, 52).astype(np.float32)
    size = output_size((40, 52), scale)
    whole = sr.upscale(image, size)
    for tile in (5, 8, 13, 17, 30):
        tiled = sr.upscale(image, size, tile_size=tile)
        assert np.abs(tiled - whole).max() <= 1e-4, (scale, tile)


def test_a_too_small_halo_would_show(tiny_model: Path) -> None:
    """Negative control: the equality test is sensitive (halo 1 instead of rf + 3 breaks it)."""
    sr = SuperResolver(tiny_model, device="cpu")
    image = smooth_image(40, 52).astype(np.float32)
    size = output_size((40, 52), 2.7)
    whole = sr.upscale(image, size)
    sr.halo = 1
    assert np.abs(sr.upscale(image, size, tile_size=8) - whole).max() > 1e-3


def _interior_tile_matches(sr: SuperResolver, image: np.ndarray, scale: float, tile: int) -> float:
    """Max |tile - whole| over the output windows of the interior tiles of a plan, decoding only
    those windows (cheap even for the real model)."""
    h, w = image.shape[1:]
    size = output_size((h, w), scale)
    proj_whole = sr.encode(image)
    worst = 0.0
    tiles = plan_tiles((h, w), size, tile, sr.halo)
    interior = [t for t in tiles if 0 < t.rows.read_start and t.rows.read_stop < h
                and 0 < t.cols.read_start and t.cols.read_stop < w]
    chosen = interior[:1] + [tiles[0], tiles[-1]]
    assert interior, "the image must be large enough to have interior tiles"
    for t in chosen:
        r, c = t.rows, t.cols
        rows, cols = (r.out_start, r.out_stop), (c.out_start, c.out_stop)
        ref = sr.decode_window(proj_whole, (0, 0), (h, w), size, rows, cols, clip=False)[0]
        proj = sr.encode(image[:, r.read_start:r.read_stop, c.read_start:c.read_stop])
        got = sr.decode_window(proj, (r.read_start, c.read_start), (h, w), size, rows, cols, clip=False)[0]
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


@pytest.mark.parametrize("scale", [2.7, 3.3])
def test_tiled_equals_whole_image_shipped_model(shipped_model: Path, scale: float) -> None:
    sr = SuperResolver(shipped_model, device="cpu")
    assert sr.halo == halo_for(sr.card.receptive_field) == sr.card.receptive_field + HALO_EXTRA
    image = smooth_image(2 * sr.halo + 30, 2 * sr.halo + 34, seed=3).astype(np.float32)
    assert _interior_tile_matches(sr, image, scale, tile=14) <= 1e-4


def test_shipped_model_matches_official_liif(shipped_model: Path) -> None:
    fixture = SHARED / "fixtures" / "liif_official_osbs029.npz"
    skip_without_shared(fixture)
    data = np.load(fixture)
    sr = SuperResolver(shipped_model, device="cpu")
    lr = data["lr_uint8"].astype(np.float32) / 255.0
    ref = data["sr_x2.5"]
    out = sr.upscale(lr, ref.shape[1:], clip=False)
    assert np.abs(out - ref).max() < 1e-4


def test_chunking_and_proj_location_do_not_change_results(tiny_model: Path) -> None:
    sr = SuperResolver(tiny_model, device="cpu")
    image = smooth_image(20, 24, seed=5).astype(np.float32)
    size = output_size((20, 24), 2.7)
    args = ((0, 0), (20, 24), size, (0, size[0]), (0, size[1]))
    reference, dev = sr.decode_window(sr.encode(image), *args, want_deviation=True)
    sr.config.chunk = 100  # many small decoder calls, rows split mid-way
    chunked, dev_chunked = sr.decode_window(sr.encode_bound(image), *args, want_deviation=True)
    assert np.array_equal(reference, chunked) and np.array_equal(dev, dev_chunked)
    assert dev.min() >= 0 and dev.max() > 0
