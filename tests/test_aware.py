"""The degradation-aware default (`auto` = models/mlin-aware-ucmerced): one code per raster, the same
answer for every tile, area of interest, small raster and override. Real shipped ONNX files, real
GDAL rasters, real onnxruntime; expectations are windows of another real run, never the code's own
arithmetic."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from conftest import REPO, UTM33N_GT, smooth_image, write_geotiff
from mlin_qgis.core.auto import aware_folder
from mlin_qgis.core.aware import CODE_NAMES, LOOKS, code_spec, parse_code_spec
from mlin_qgis.core.engine import SuperResolver
from mlin_qgis.core.errors import ConfigError, MlinError
from mlin_qgis.core.pipeline import SuperResolveRequest, superresolve

AWARE = REPO / "models" / "mlin-aware-ucmerced"


@pytest.fixture(scope="module")
def raster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("aware")
    data = np.rint(smooth_image(60, 76, seed=3) * 255).astype(np.uint8)
    data[:, ::2, :] = np.clip(data[:, ::2, :].astype(int) + 12, 0, 255).astype(np.uint8)  # some fine detail
    return write_geotiff(folder / "in.tif", data)


def read(path: Path) -> np.ndarray:
    return gdal.Open(str(path)).ReadAsArray().astype(np.int64)


def metadata(path: Path) -> dict:
    return gdal.Open(str(path)).GetMetadata()


def test_the_aware_model_ships_and_is_what_auto_runs() -> None:
    assert AWARE.is_dir(), "models/mlin-aware-ucmerced is the default model"
    assert aware_folder("auto") == AWARE.resolve() and aware_folder(None) == AWARE.resolve()
    assert aware_folder(code_spec(str(AWARE), LOOKS["clean"])) is None, "a spec with a code is already decided"


def test_code_specs_round_trip_and_bad_codes_are_refused() -> None:
    spec = code_spec("some/folder", (0.1, 0.25, 0.0, 1.0))
    assert parse_code_spec(spec) == ("some/folder", (0.1, 0.25, 0.0, 1.0))
    assert parse_code_spec("plain") == ("plain", None)
    for bad in ("x#code=0.1,0.2", "x#code=a,b,c,d", "x#code=0.1,0.2,0.3,1.5"):
        with pytest.raises(ConfigError, match="cannot read the code"):
            parse_code_spec(bad)


def test_the_code_changes_the_weights_and_one_code_gives_one_engine() -> None:
    image = np.random.default_rng(1).random((3, 20, 24)).astype(np.float32)
    clean = SuperResolver(code_spec(str(AWARE), LOOKS["clean"]), device="cpu", threads=1).upscale(image, (50, 60))
    again = SuperResolver(code_spec(str(AWARE), LOOKS["clean"]), device="cpu", threads=1).upscale(image, (50, 60))
    sharp = SuperResolver(code_spec(str(AWARE), LOOKS["sharp"]), device="cpu", threads=1).upscale(image, (50, 60))
    plain = SuperResolver(str(AWARE), device="cpu", threads=1).upscale(image, (50, 60))
    assert np.array_equal(clean, again)
    assert np.abs(clean - plain).max() < 2e-3, "the folder's own pair is the network mixed for a clean input"
    assert np.abs(clean - sharp).max() > 1e-2, "a different code runs different weights"
    with pytest.raises(MlinError, match="not degradation-aware"):
        SuperResolver(code_spec(str(REPO / "models" / "liif-edsr-div2k"), LOOKS["clean"]))


def test_auto_records_the_code_and_an_override_replaces_it(raster: Path, tmp_path: Path) -> None:
    auto = superresolve(SuperResolveRequest(raster, tmp_path / "auto.tif", 2.0, threads=1))
    meta = metadata(auto.output_path)
    assert "estimated from" in meta["MLIN_ROUTE"] and AWARE.name in meta["MLIN_ROUTE"]
    code = dict(item.split("=") for item in meta["MLIN_INPUT_CODE"].split())
    assert list(code) == list(CODE_NAMES) and all(0.0 <= float(v) <= 1.0 for v in code.values())
    sharp = superresolve(SuperResolveRequest(raster, tmp_path / "sharp.tif", 2.0, threads=1, input_looks="sharp"))
    assert metadata(sharp.output_path)["MLIN_INPUT_CODE"] == "aliasing=1.0000 blur=0.0000 noise=0.0000 compression=0.0000"
    assert "--input-looks sharp" in metadata(sharp.output_path)["MLIN_ROUTE"]
    assert read(sharp.output_path).shape == read(auto.output_path).shape
    with pytest.raises(MlinError, match="--input-looks needs a degradation-aware model"):
        superresolve(SuperResolveRequest(raster, tmp_path / "x.tif", 2.0, model="liif-edsr-div2k", input_looks="sharp"))
    with pytest.raises(ConfigError, match="unknown --input-looks"):
        superresolve(SuperResolveRequest(raster, tmp_path / "y.tif", 2.0, input_looks="foggy"))
    assert not (tmp_path / "x.tif").exists() and not (tmp_path / "y.tif").exists()


@pytest.mark.parametrize("scale", [2.0, 3.7])
def test_tiles_and_an_area_of_interest_give_the_whole_run_pixels(raster: Path, tmp_path: Path, scale: float) -> None:
    whole = superresolve(SuperResolveRequest(raster, tmp_path / "whole.tif", scale, threads=1))
    tiled = superresolve(SuperResolveRequest(raster, tmp_path / "tiled.tif", scale, threads=1, tile_size=20))
    assert np.abs(read(whole.output_path) - read(tiled.output_path)).max() <= 1
    x0, y0, res = UTM33N_GT[0], UTM33N_GT[3], UTM33N_GT[1]
    extent = (x0 + 5 * res, y0 - 21 * res, x0 + 19 * res, y0 - 9 * res)  # 14 x 12 px: too small to judge alone
    part = superresolve(SuperResolveRequest(raster, tmp_path / "part.tif", scale, threads=1, extent=extent))
    w, p = gdal.Open(str(whole.output_path)), gdal.Open(str(part.output_path))
    c0 = round((p.GetGeoTransform()[0] - w.GetGeoTransform()[0]) / w.GetGeoTransform()[1])
    r0 = round((p.GetGeoTransform()[3] - w.GetGeoTransform()[3]) / w.GetGeoTransform()[5])
    cut = read(whole.output_path)[:, r0:r0 + p.RasterYSize, c0:c0 + p.RasterXSize]
    assert np.abs(read(part.output_path) - cut).max() <= 1
    assert metadata(part.output_path)["MLIN_INPUT_CODE"] == metadata(whole.output_path)["MLIN_INPUT_CODE"]


def test_a_12_px_raster_at_x10_runs(tmp_path: Path) -> None:
    data = np.rint(smooth_image(12, 12, seed=9) * 255).astype(np.uint8)
    small = write_geotiff(tmp_path / "small.tif", data)
    result = superresolve(SuperResolveRequest(small, tmp_path / "small_x10.tif", 10.0, threads=1))
    assert (result.width, result.height) == (120, 120)
    assert "estimated from" in metadata(result.output_path)["MLIN_ROUTE"]


def test_a_mostly_masked_raster_is_judged_by_its_few_valid_pixels(tmp_path: Path) -> None:
    data = np.zeros((3, 16, 16), np.uint8)
    data[:, 6:8, 6:8] = 200
    masked = write_geotiff(tmp_path / "holes.tif", data, nodata=0)
    result = superresolve(SuperResolveRequest(masked, tmp_path / "holes_x2.tif", 2.0, threads=1))
    assert "with masked pixels" in metadata(result.output_path)["MLIN_ROUTE"], "every window is under 90 % valid"
