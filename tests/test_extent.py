"""An area of interest: its result is exactly the same window of the whole-raster result (the halo is
read from outside the window), georeferenced to the window; bad extents are refused clearly."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, osr

from conftest import UTM33N_GT, smooth_image
from mlin_qgis.core.errors import MlinError
from mlin_qgis.core.pipeline import SuperResolveRequest, superresolve

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def raster(make_raster) -> Path:
    return make_raster(np.round(smooth_image(70, 90, seed=7) * 255).astype(np.uint8))


@pytest.mark.parametrize("scale, tile", [(2.5, 16), (3.0, None)])
def test_area_equals_the_window_of_the_whole_result(tiny_model: Path, raster: Path, tmp_path: Path,
                                                    scale: float, tile) -> None:
    whole, part = tmp_path / "whole.tif", tmp_path / "part.tif"
    superresolve(SuperResolveRequest(raster, whole, scale, model=tiny_model, tile_size=tile))
    x0, y0, res = UTM33N_GT[0], UTM33N_GT[3], UTM33N_GT[1]
    # columns 20.3..61.2 and rows 10.6..40.1 of the input: snapped outward to cols 20-61, rows 10-40
    extent = (x0 + 20.3 * res, y0 - 41.0 * res + 0.45 * res, x0 + 61.2 * res, y0 - 10.6 * res)
    result = superresolve(SuperResolveRequest(raster, part, scale, model=tiny_model, tile_size=tile, extent=extent))
    w, p = gdal.Open(str(whole)), gdal.Open(str(part))
    gw, gp = w.GetGeoTransform(), p.GetGeoTransform()
    c0 = round((gp[0] - gw[0]) / gw[1])
    r0 = round((gp[3] - gw[3]) / gw[5])
    assert gp[0] == pytest.approx(gw[0] + c0 * gw[1]) and gp[1:3] == gw[1:3] and gp[4:] == gw[4:]
    assert gp[0] <= extent[0] < gp[0] + gw[1] * 3 and c0 > 0 and r0 > 0  # the window, snapped outward
    a = w.ReadAsArray()[:, r0:r0 + p.RasterYSize, c0:c0 + p.RasterXSize].astype(int)
    b = p.ReadAsArray().astype(int)
    assert b.shape[1:] == (result.height, result.width) and b.shape[1] < w.RasterYSize
    assert np.array_equal(a, b)  # the same tiles answer the same pixels: identical, not just close
    assert p.GetProjection() == w.GetProjection()


def test_extent_in_another_crs_and_the_cli(tiny_model: Path, raster: Path, tmp_path: Path) -> None:
    ds = gdal.Open(str(raster))
    src = osr.SpatialReference(wkt=ds.GetProjection())
    wgs = osr.SpatialReference()
    wgs.ImportFromEPSG(4326)
    for ref in (src, wgs):
        ref.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_wgs = osr.CoordinateTransformation(src, wgs)
    x0, y0, res = UTM33N_GT[0], UTM33N_GT[3], UTM33N_GT[1]
    lo = to_wgs.TransformPoint(x0 + 30 * res, y0 - 50 * res)[:2]
    hi = to_wgs.TransformPoint(x0 + 60 * res, y0 - 20 * res)[:2]
    out = tmp_path / "wgs.tif"
    proc = subprocess.run([sys.executable, "-m", "mlin_qgis", "sr", str(raster), str(out), "--scale", "2",
                           "--model", str(tiny_model), "--extent", f"{lo[0]},{lo[1]},{hi[0]},{hi[1]}",
                           "--extent-crs", "EPSG:4326"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    p = gdal.Open(str(out))
    assert 58 <= p.RasterXSize <= 64 and 58 <= p.RasterYSize <= 64  # ~30 x 30 input px at x2, snapped outward
    bad = subprocess.run([sys.executable, "-m", "mlin_qgis", "sr", str(raster), str(tmp_path / "bad.tif"),
                          "--scale", "2", "--model", str(tiny_model), "--extent", "0,0,1,1"],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "does not overlap the raster" in bad.stderr and not (tmp_path / "bad.tif").exists()
    with pytest.raises(MlinError, match="xmin < xmax"):
        superresolve(SuperResolveRequest(raster, tmp_path / "e.tif", 2.0, model=tiny_model, extent=(5, 5, 1, 9)))
    with pytest.raises(MlinError, match="unknown CRS 'EPSG:nope'"):
        superresolve(SuperResolveRequest(raster, tmp_path / "e.tif", 2.0, model=tiny_model,
                                         extent=(0, 0, 1, 1), extent_crs="EPSG:nope"))
