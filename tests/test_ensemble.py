"""The x8 self-ensemble: exact under tiling and on non-square images, a no-op for a model that already
commutes with flips and transposes, and a real change for one that does not."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from osgeo import gdal

from conftest import build_tiny_model, smooth_image
from mlin_qgis.core.engine import SuperResolver
from mlin_qgis.core.errors import MlinError
from mlin_qgis.core.pipeline import SuperResolveRequest, estimate, superresolve


def _image(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((3, h, w)).astype(np.float32)


def test_ensemble_is_a_no_op_for_a_flip_equivariant_model(tmp_path):
    engine = SuperResolver(build_tiny_model(tmp_path / "sym", symmetric=True), device="cpu", threads=1)
    image = _image(23, 31, 0)
    for out_size in ((46, 62), (57, 77)):  # x2 and x2.5, non-square
        plain = engine.upscale(image, out_size, clip=False)
        both = engine.upscale(image, out_size, clip=False, ensemble=8)
        assert np.abs(both - plain).max() < 1e-5


def test_ensemble_changes_an_ordinary_model_and_is_exact_under_tiling(tmp_path):
    engine = SuperResolver(build_tiny_model(tmp_path / "plain", seed=3), device="cpu", threads=1)
    image = _image(29, 41, 1)
    out_size = (73, 103)  # x2.5 / x2.51: non-square, non-integer
    plain = engine.upscale(image, out_size, clip=False)
    whole = engine.upscale(image, out_size, clip=False, ensemble=8)
    tiled = engine.upscale(image, out_size, tile_size=9, clip=False, ensemble=8)
    assert np.abs(whole - plain).max() > 1e-3  # the model is not equivariant: the ensemble does something
    assert np.abs(tiled - whole).max() < 1e-5
    # the ensemble is the mean of the 8 flipped-and-back passes: check one pass by hand
    flipped = engine.upscale(np.ascontiguousarray(image[:, ::-1, :]), out_size, clip=False)[:, ::-1, :]
    transposed = engine.upscale(np.ascontiguousarray(image.transpose(0, 2, 1)), out_size[::-1],
                                clip=False).transpose(0, 2, 1)
    assert np.abs(flipped - plain).max() > 1e-3 and np.abs(transposed - plain).max() > 1e-3
    with pytest.raises(MlinError, match="ensemble must be 1 .* or 8"):
        engine.upscale(image, out_size, ensemble=4)


def test_pipeline_and_cli_run_the_ensemble(tmp_path, make_raster):
    model = build_tiny_model(tmp_path / "m", seed=5)
    src = make_raster(np.round(smooth_image(37, 44) * 255).astype(np.uint8))
    plain, ens, tiled = tmp_path / "plain.tif", tmp_path / "ens.tif", tmp_path / "ens_tiled.tif"
    superresolve(SuperResolveRequest(src, plain, 2.0, model=model, device="cpu"))
    superresolve(SuperResolveRequest(src, ens, 2.0, model=model, device="cpu", ensemble=8))
    superresolve(SuperResolveRequest(src, tiled, 2.0, model=model, device="cpu", ensemble=8, tile_size=16))
    a, b, c = (gdal.Open(str(p)).ReadAsArray().astype(int) for p in (plain, ens, tiled))
    assert a.shape == b.shape == (3, 74, 88)
    assert np.abs(b - c).max() <= 1 and np.abs(a - b).max() >= 2
    assert gdal.Open(str(ens)).GetGeoTransform() == gdal.Open(str(plain)).GetGeoTransform()
    one, eight = estimate(src, 2.0, model=model), estimate(src, 2.0, model=model, ensemble=8)
    assert eight.seconds == pytest.approx(8 * one.seconds)
    out = tmp_path / "cli.tif"
    proc = subprocess.run([sys.executable, "-m", "mlin_qgis", "sr", str(src), str(out), "--scale", "2",
                           "--model", str(model), "--ensemble", "8", "--device", "cpu"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "ensemble 8: 8 passes, about 8x the time" in proc.stderr
    assert np.array_equal(gdal.Open(str(out)).ReadAsArray(), gdal.Open(str(ens)).ReadAsArray())
    bad = subprocess.run([sys.executable, "-m", "mlin_qgis", "sr", str(src), str(tmp_path / "bad.tif"),
                          "--scale", "2", "--model", str(model), "--ensemble", "3"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 3" in bad.stderr and not (tmp_path / "bad.tif").exists()
