"""The `sr` pipeline on small real GeoTIFFs: georeferencing, data types, masks, bands, outputs,
determinism, cancel and every bad input (each leaves no file behind)."""
from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, osr

from conftest import TINY_CARD, smooth_image, write_geotiff
from mlin_qgis.core.errors import MlinCancelled, MlinError
from mlin_qgis.core.estimates import Estimate, estimate
from mlin_qgis.core.outputs import COMPRESSION_FACTOR, estimate_bytes
from mlin_qgis.core.pipeline import SuperResolveRequest, superresolve
from mlin_qgis.core.tiling import nearest_index, query_coords

RGB = [gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand]
H, W = 40, 52


def bilinear(image: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize on the project's pixel-centre grid (edge-clamped): the tiny model's
    output is within a few hundredths of this, so it is a real reference for values."""
    h, w = image.shape[-2:]
    ry, rx = query_coords(h, out_size[0]), query_coords(w, out_size[1])
    y0 = np.clip(np.floor(ry), 0, h - 1).astype(int); x0 = np.clip(np.floor(rx), 0, w - 1).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy = np.clip(ry - y0, 0, 1)[:, None]; fx = np.clip(rx - x0, 0, 1)[None, :]
    a = image[..., y0, :][..., x0]; b = image[..., y0, :][..., x1]
    c = image[..., y1, :][..., x0]; d = image[..., y1, :][..., x1]
    return (a * (1 - fy) * (1 - fx) + b * (1 - fy) * fx + c * fy * (1 - fx) + d * fy * fx)


def read(path: Path) -> tuple[gdal.Dataset, np.ndarray]:
    ds = gdal.Open(str(path))
    assert ds is not None
    return ds, ds.ReadAsArray().reshape(ds.RasterCount, ds.RasterYSize, ds.RasterXSize)


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def run(model: Path, inp: Path, out: Path, scale: float = 2.7, **kwargs):
    return superresolve(SuperResolveRequest(inp, out, scale, model=model, device="cpu", **kwargs))


@pytest.fixture
def rgb_u8(make_raster) -> Path:
    data = np.rint(smooth_image(H, W) * 255).astype(np.uint8)
    return make_raster(data, color_interp=RGB, descriptions=["red", "green", "blue"])


# -- georeferencing -------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [2.7, 3.3])
def test_georeferencing_crs_and_rotation(tiny_model: Path, make_raster, tmp_path: Path, scale: float) -> None:
    gt = (500000.0, 0.5, 0.12, 4000000.0, 0.08, -0.5)
    data = np.rint(smooth_image(H, W) * 255).astype(np.uint8)
    inp = make_raster(data, geotransform=gt, epsg=32617, color_interp=RGB, descriptions=["r", "g", "b"])
    result = run(tiny_model, inp, tmp_path / "out.tif", scale, tile_size=16)
    ds, _ = read(tmp_path / "out.tif")
    oh, ow = round(H * scale), round(W * scale)
    assert (ds.RasterYSize, ds.RasterXSize) == (oh, ow) == (result.height, result.width)
    sx, sy = ow / W, oh / H
    assert result.scale_x == pytest.approx(sx) and result.scale_y == pytest.approx(sy)
    assert ds.GetGeoTransform() == pytest.approx((gt[0], gt[1] / sx, gt[2] / sy, gt[3], gt[4] / sx, gt[5] / sy))
    # the footprint is unchanged: the far corner maps to the same ground point
    ogt = ds.GetGeoTransform()
    corner_in = (gt[0] + W * gt[1] + H * gt[2], gt[3] + W * gt[4] + H * gt[5])
    corner_out = (ogt[0] + ow * ogt[1] + oh * ogt[2], ogt[3] + ow * ogt[4] + oh * ogt[5])
    assert corner_out == pytest.approx(corner_in, abs=1e-6)
    srs = osr.SpatialReference(wkt=ds.GetProjection())
    assert srs.GetAuthorityCode(None) == "32617"
    assert [ds.GetRasterBand(i + 1).GetColorInterpretation() for i in range(3)] == RGB
    assert [ds.GetRasterBand(i + 1).GetDescription() for i in range(3)] == ["r", "g", "b"]
    structure = ds.GetMetadata("IMAGE_STRUCTURE")
    assert structure["COMPRESSION"] == "DEFLATE" and structure.get("PREDICTOR", "2") == "2"  # readable everywhere
    assert ds.GetRasterBand(1).GetBlockSize() == [256, 256]
    assert ds.GetMetadataItem("MLIN_MODEL") == "tiny-test 1"


# -- data types and values ------------------------------------------------------------------------
def test_uint8_values_follow_the_model(tiny_model: Path, rgb_u8: Path, tmp_path: Path) -> None:
    run(tiny_model, rgb_u8, tmp_path / "out.tif", 2.7, tile_size=16)
    ds, out = read(tmp_path / "out.tif")
    _, src = read(rgb_u8)
    assert out.dtype == np.uint8
    ref = bilinear(src.astype(np.float64), out.shape[1:])
    diff = np.abs(out.astype(np.float64) - ref)
    assert diff.mean() < 3.0 and diff.max() < 9.0


def test_uint16_is_stretched_and_mapped_back(tiny_model: Path, make_raster, tmp_path: Path) -> None:
    src = (1000 + smooth_image(H, W, seed=1) * 30000).astype(np.uint16)
    inp = make_raster(src)
    run(tiny_model, inp, tmp_path / "out.tif", 3.3, tile_size=16)
    ds, out = read(tmp_path / "out.tif")
    assert out.dtype == np.uint16 and ds.GetRasterBand(1).DataType == gdal.GDT_UInt16
    ref = bilinear(src.astype(np.float64), out.shape[1:])
    diff = np.abs(out.astype(np.float64) - ref)
    assert diff.mean() < 0.01 * 30000 and diff.max() < 0.05 * 30000
    # values far outside the 2-98 % stretch are passed through, not flattened to the percentiles
    assert out.max() > np.percentile(src, 98) and out.min() < np.percentile(src, 2)


def test_int16_with_negative_values(tiny_model: Path, make_raster, tmp_path: Path) -> None:
    src = (smooth_image(H, W, bands=3, seed=2) * 2000 - 1000).astype(np.int16)
    run(tiny_model, make_raster(src), tmp_path / "out.tif", 2.0)
    _, out = read(tmp_path / "out.tif")
    assert out.dtype == np.int16
    assert np.abs(out.astype(float) - bilinear(src.astype(float), out.shape[1:])).mean() < 20


def test_float32_with_nodata(tiny_model: Path, make_raster, tmp_path: Path) -> None:
    src = (smooth_image(H, W, seed=4) * 0.4).astype(np.float32)
    src[:, 10:20, 5:15] = -9999.0
    inp = make_raster(src, nodata=-9999.0)
    run(tiny_model, inp, tmp_path / "out.tif", 2.7, tile_size=16)
    ds, out = read(tmp_path / "out.tif")
    assert out.dtype == np.float32 and ds.GetRasterBand(1).GetNoDataValue() == -9999.0
    ny, nx = nearest_index(H, out.shape[1]), nearest_index(W, out.shape[2])
    expected_invalid = (src[0] == -9999.0)[np.ix_(ny, nx)]
    assert np.array_equal(out[0] == -9999.0, expected_invalid)
    assert np.array_equal(out[2] == -9999.0, expected_invalid)
    good = out[:, ~expected_invalid]
    assert np.isfinite(good).all() and good.min() > -0.2 and good.max() < 0.6
    # the nodata hole did not ring into its neighbours: far from it, values follow the input
    ref = bilinear(src.astype(np.float64), out.shape[1:])
    assert np.abs(out[:, 80:, 80:] - ref[:, 80:, 80:]).max() < 0.02


def test_float32_nan_is_invalid(tiny_model: Path, make_raster, tmp_path: Path) -> None:
    src = smooth_image(H, W, seed=5).astype(np.float32)
    src[:, :5, :] = np.nan
    run(tiny_model, make_raster(src, nodata=float("nan")), tmp_path / "out.tif", 2.0)
    _, out = read(tmp_path / "out.tif")
    assert np.isnan(out[:, :10, :]).all() and np.isfinite(out[:, 10:, :]).all()


def test_uint8_nodata_zero_keeps_valid_pixels_valid(tiny_model: Path, make_raster, tmp_path: Path) -> None:
    src = np.rint(smooth_image(H, W, seed=6) * 60).astype(np.uint8)  # dark: the model outputs zeros
    src = np.maximum(src, 1)
    src[:, :, :4] = 0  # nodata strip
    run(tiny_model, make_raster(src, nodata=0, color_interp=RGB), tmp_path / "out.tif", 2.5)
    ds, out = read(tmp_path / "out.tif")
    nx = nearest_index(W, out.shape[2])
    invalid_cols = nx < 4
    assert (out[:, :, invalid_cols] == 0).all()
    assert (out[:, :, ~invalid_cols] > 0).all()
    assert ds.GetRasterBand(1).GetNoDataValue() == 0


def test_one_band_raster_stays_one_band(tiny_model: Path, make_raster, tmp_path: Path) -> None:
    src = (smooth_image(H, W, bands=1, seed=7) * 4000).astype(np.uint16)
    inp = make_raster(src, descriptions=["elevation-like"])
    run(tiny_model, inp, tmp_path / "out.tif", 2.7)
    ds, out = read(tmp_path / "out.tif")
    assert ds.RasterCount == 1 and out.dtype == np.uint16
    assert ds.GetRasterBand(1).GetDescription() == "elevation-like"
    assert np.abs(out[0].astype(float) - bilinear(src[0].astype(float), out.shape[1:])).mean() < 40


def test_two_band_raster_processes_each_band_alone(tiny_model: Path, make_raster, tmp_path: Path) -> None:
    src = np.rint(smooth_image(H, W, bands=2, seed=8) * 255).astype(np.uint8)
    src[1] = 200  # a constant band must come back (nearly) constant: it is not mixed with band 1
    run(tiny_model, make_raster(src), tmp_path / "out.tif", 2.0)
    ds, out = read(tmp_path / "out.tif")
    assert ds.RasterCount == 2
    assert np.abs(out[1, 4:-4, 4:-4].astype(int) - 200).max() <= 6


def test_rgba_alpha_is_carried_not_fed(tiny_model: Path, make_raster, tmp_path: Path) -> None:
    rgb = np.rint(smooth_image(H, W, seed=9) * 255).astype(np.uint8)
    alpha = np.full((1, H, W), 255, np.uint8)
    alpha[0, 25:, 30:] = 0
    alpha[0, 0:3, :] = 128
    inp = make_raster(np.concatenate([rgb, alpha]), color_interp=RGB + [gdal.GCI_AlphaBand])
    run(tiny_model, inp, tmp_path / "out.tif", 2.7, tile_size=16)
    ds, out = read(tmp_path / "out.tif")
    assert ds.RasterCount == 4 and ds.GetRasterBand(4).GetColorInterpretation() == gdal.GCI_AlphaBand
    ny, nx = nearest_index(H, out.shape[1]), nearest_index(W, out.shape[2])
    assert np.array_equal(out[3], alpha[0][np.ix_(ny, nx)])
    assert (out[:3, out[3] == 0] == 0).all()
    visible = out[3] == 255
    ref = bilinear(rgb.astype(float), out.shape[1:])
    assert np.abs(out[:3, :40, :40].astype(float) - ref[:, :40, :40]).mean() < 3
    assert visible.sum() > 0


def test_band_choice_by_colour_interpretation_and_list(tiny_model: Path, make_raster, tmp_path: Path) -> None:
    src = np.rint(smooth_image(H, W, bands=5, seed=10) * 255).astype(np.uint8)
    interp = [gdal.GCI_BlueBand, gdal.GCI_GreenBand, gdal.GCI_RedBand, gdal.GCI_Undefined, gdal.GCI_Undefined]
    names = ["b", "g", "r", "nir", "swir"]
    inp = make_raster(src, color_interp=interp, descriptions=names)
    run(tiny_model, inp, tmp_path / "default.tif", 2.0)
    ds, _ = read(tmp_path / "default.tif")
    assert [ds.GetRasterBand(i + 1).GetDescription() for i in range(ds.RasterCount)] == ["r", "g", "b"]
    run(tiny_model, inp, tmp_path / "chosen.tif", 2.0, bands=[4, 3, 2])
    ds, _ = read(tmp_path / "chosen.tif")
    assert [ds.GetRasterBand(i + 1).GetDescription() for i in range(ds.RasterCount)] == ["nir", "r", "g"]
    run(tiny_model, inp, tmp_path / "all.tif", 2.0, all_bands=True)
    ds, out = read(tmp_path / "all.tif")
    assert [ds.GetRasterBand(i + 1).GetDescription() for i in range(ds.RasterCount)] == names
    assert np.abs(out[3:].astype(float) - bilinear(src[3:].astype(float), out.shape[1:])).mean() < 3


def test_internal_mask_is_carried(tiny_model: Path, tmp_path: Path) -> None:
    src = np.rint(smooth_image(H, W, seed=11) * 255).astype(np.uint8)
    path = write_geotiff(tmp_path / "in.tif", src, color_interp=RGB)
    ds = gdal.Open(str(path), gdal.GA_Update)
    ds.CreateMaskBand(gdal.GMF_PER_DATASET)
    mask = np.full((H, W), 255, np.uint8)
    mask[:10, :10] = 0
    ds.GetRasterBand(1).GetMaskBand().WriteArray(mask)
    ds = None
    run(tiny_model, path, tmp_path / "out.tif", 2.0)
    out = gdal.Open(str(tmp_path / "out.tif"))
    assert out.GetRasterBand(1).GetMaskFlags() == gdal.GMF_PER_DATASET
    omask = out.GetRasterBand(1).GetMaskBand().ReadAsArray()
    assert (omask[:20, :20] == 0).all() and (omask[20:, :] == 255).all()


# -- outputs ----------------------------------------------------------------------------------------
def test_cog_output(tiny_model: Path, rgb_u8: Path, tmp_path: Path) -> None:
    run(tiny_model, rgb_u8, tmp_path / "out.tif", 2.7, cog=True)
    ds = gdal.Open(str(tmp_path / "out.tif"))
    assert ds.GetMetadataItem("LAYOUT", "IMAGE_STRUCTURE") == "COG"
    assert files_in(tmp_path) == {"in.tif", "out.tif"}


def test_weights_map(tiny_model: Path, rgb_u8: Path, tmp_path: Path) -> None:
    result = run(tiny_model, rgb_u8, tmp_path / "out.tif", 3.3, weights_map_path=tmp_path / "w.tif", tile_size=16)
    assert result.weights_map_path == tmp_path / "w.tif"
    out = gdal.Open(str(tmp_path / "out.tif"))
    ds, wmap = read(tmp_path / "w.tif")
    assert ds.RasterCount == 1 and ds.GetRasterBand(1).DataType == gdal.GDT_Float32
    assert (ds.RasterXSize, ds.RasterYSize) == (out.RasterXSize, out.RasterYSize)
    assert ds.GetGeoTransform() == out.GetGeoTransform() and ds.GetProjection() == out.GetProjection()
    assert (wmap >= 0).all() and (wmap <= 1).all() and wmap.max() > 0.01
    # the map is the engine's own max |weights - area weights| of a whole-image pass (tiling is exact)
    from mlin_qgis.core.engine import SuperResolver

    lr = read(rgb_u8)[1].astype(np.float64) / 255.0  # uint8 model units (lo 0, span 255)
    sr = SuperResolver(tiny_model, device="cpu")
    size = (ds.RasterYSize, ds.RasterXSize)
    _, dev = sr.decode_window(sr.encode(lr.astype(np.float32)), (0, 0), lr.shape[1:], size, (0, size[0]),
                              (0, size[1]), want_deviation=True)
    assert np.abs(wmap[0] - dev).max() < 1e-5


def test_output_is_bit_identical_twice(tiny_model: Path, rgb_u8: Path, tmp_path: Path) -> None:
    digests = []
    for name in ("a.tif", "b.tif"):
        run(tiny_model, rgb_u8, tmp_path / name, 3.3, tile_size=16)
        digests.append(hashlib.sha256((tmp_path / name).read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_tiled_pipeline_equals_one_tile(tiny_model: Path, make_raster, tmp_path: Path) -> None:
    src = smooth_image(H, W, seed=12).astype(np.float32)
    inp = make_raster(src)
    run(tiny_model, inp, tmp_path / "one.tif", 3.3, tile_size=1000)
    run(tiny_model, inp, tmp_path / "many.tif", 3.3, tile_size=7)
    _, one = read(tmp_path / "one.tif")
    _, many = read(tmp_path / "many.tif")
    assert np.abs(one - many).max() <= 1e-4


def test_overwrites_existing_output_and_reports_progress(tiny_model: Path, rgb_u8: Path, tmp_path: Path) -> None:
    (tmp_path / "out.tif").write_bytes(b"old")
    seen = []
    result = superresolve(SuperResolveRequest(rgb_u8, tmp_path / "out.tif", 2.0, model=tiny_model, tile_size=16),
                          progress=lambda f, m: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and len(seen) == result.tiles + 1
    assert seen == sorted(seen)
    assert gdal.Open(str(tmp_path / "out.tif")).RasterXSize == 104
    assert result.mpx_per_s > 0 and result.provider == "CPUExecutionProvider"


# -- cancel and failures ----------------------------------------------------------------------------
def test_cancel_mid_run_leaves_nothing(tiny_model: Path, rgb_u8: Path, tmp_path: Path) -> None:
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(MlinCancelled):
        superresolve(SuperResolveRequest(rgb_u8, tmp_path / "out.tif", 2.7, model=tiny_model, tile_size=8,
                                         weights_map_path=tmp_path / "w.tif"), is_cancelled=cancelled)
    assert len(calls) == 4
    assert files_in(tmp_path) == {"in.tif"}


def test_error_mid_run_leaves_nothing(tiny_model: Path, rgb_u8: Path, tmp_path: Path) -> None:
    def progress(fraction: float, message: str) -> None:
        if fraction > 0.3:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        superresolve(SuperResolveRequest(rgb_u8, tmp_path / "out.tif", 2.7, model=tiny_model, tile_size=8,
                                         cog=True), progress=progress)
    assert files_in(tmp_path) == {"in.tif"}


# -- bad input: an MlinError naming the problem, and no file left ---------------------------------
def expect_refusal(tmp_path: Path, match: str, **request) -> MlinError:
    before = files_in(tmp_path)
    request.setdefault("device", "cpu")
    with pytest.raises(MlinError, match=match) as info:
        superresolve(SuperResolveRequest(**request))
    assert files_in(tmp_path) == before
    return info.value


def test_missing_input(tiny_model: Path, tmp_path: Path) -> None:
    expect_refusal(tmp_path, "does not exist", input_path=tmp_path / "nope.tif",
                   output_path=tmp_path / "out.tif", scale=2, model=tiny_model)


def test_not_a_raster(tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.tif").write_text("hello, not a raster")
    expect_refusal(tmp_path, "not a raster GDAL can read", input_path=tmp_path / "notes.tif",
                   output_path=tmp_path / "out.tif", scale=2, model=tiny_model)
    expect_refusal(tmp_path, "is a folder", input_path=tmp_path, output_path=tmp_path / "out.tif",
                   scale=2, model=tiny_model)


@pytest.mark.parametrize("scale", [1, 1.0, 0.5, -2, "abc", None, float("nan"), float("inf")])
def test_bad_scale(tiny_model: Path, rgb_u8: Path, tmp_path: Path, scale) -> None:
    expect_refusal(tmp_path, "scale must be a number greater than 1", input_path=rgb_u8,
                   output_path=tmp_path / "out.tif", scale=scale, model=tiny_model)


def test_scale_limits_of_the_card(tiny_model: Path, rgb_u8: Path, tmp_path: Path) -> None:
    expect_refusal(tmp_path, "above the hard limit x12", input_path=rgb_u8, output_path=tmp_path / "out.tif",
                   scale=12.5, model=tiny_model)
    result = run(tiny_model, rgb_u8, tmp_path / "out.tif", 7.0, tile_size=64)
    assert len(result.warnings) == 1 and "above x6" in result.warnings[0]
    assert run(tiny_model, rgb_u8, tmp_path / "ok.tif", 5.0).warnings == []


def test_output_equals_input(tiny_model: Path, rgb_u8: Path, tmp_path: Path) -> None:
    expect_refusal(tmp_path, "same file as", input_path=rgb_u8, output_path=rgb_u8, scale=2, model=tiny_model)
    expect_refusal(tmp_path, "same file as", input_path=rgb_u8, output_path=tmp_path / "." / "in.tif",
                   scale=2, model=tiny_model)
    expect_refusal(tmp_path, "same file as", input_path=rgb_u8, output_path=tmp_path / "out.tif",
                   weights_map_path=tmp_path / "out.tif", scale=2, model=tiny_model)


def test_output_folder_problems(tiny_model: Path, rgb_u8: Path, tmp_path: Path) -> None:
    expect_refusal(tmp_path, "does not exist", input_path=rgb_u8, output_path=tmp_path / "missing" / "o.tif",
                   scale=2, model=tiny_model)
    expect_refusal(tmp_path, "is not a folder", input_path=rgb_u8, output_path=rgb_u8 / "o.tif",
                   scale=2, model=tiny_model)
    expect_refusal(tmp_path, "must be a GeoTIFF", input_path=rgb_u8, output_path=tmp_path / "o.png",
                   scale=2, model=tiny_model)
    if Path("/proc").is_dir():
        expect_refusal(tmp_path, "not writable", input_path=rgb_u8, output_path="/proc/mlin-out.tif",
                       scale=2, model=tiny_model)


def test_not_enough_disk_space(tiny_model_factory, make_raster, tmp_path: Path) -> None:
    model = tiny_model_factory(dict(TINY_CARD, recommended_max_scale=100000.0, hard_max_scale=100000.0))
    inp = make_raster(np.ones((3, H, W), np.float32))
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    scale = math.ceil(math.sqrt(free * 4 * COMPRESSION_FACTOR / (H * W * 3 * 4))) + 1.0
    err = expect_refusal(tmp_path, "GB are free", input_path=inp, output_path=tmp_path / "out.tif",
                         scale=scale, model=model)
    assert "smaller scale" in str(err)


def test_corrupt_model_and_missing_card_fields(tiny_model_factory, rgb_u8: Path, tmp_path: Path) -> None:
    broken = tiny_model_factory()
    (broken / "decoder.onnx").write_bytes(b"\x00garbage")
    expect_refusal(tmp_path, "is not an mlin model", input_path=rgb_u8, output_path=tmp_path / "out.tif",
                   scale=2, model=broken)
    lacking = tiny_model_factory({k: v for k, v in TINY_CARD.items() if k != "output_std"})
    expect_refusal(tmp_path, "lacks the field.*output_std", input_path=rgb_u8,
                   output_path=tmp_path / "out.tif", scale=2, model=lacking)
    expect_refusal(tmp_path, "unknown model 'nope'", input_path=rgb_u8, output_path=tmp_path / "out.tif",
                   scale=2, model="nope")


def test_zero_valid_pixels(tiny_model: Path, make_raster, tmp_path: Path) -> None:
    inp = make_raster(np.full((3, H, W), 7, np.uint8), nodata=7)
    expect_refusal(tmp_path, "no valid pixels", input_path=inp, output_path=tmp_path / "out.tif",
                   scale=2, model=tiny_model)


def test_few_valid_pixels_missed_by_decimation_still_run(tiny_model: Path, make_raster, tmp_path: Path) -> None:
    src = np.zeros((1, 1100, 1100), np.uint8)
    src[0, 1, 1] = 90
    inp = make_raster(src, nodata=0, options=["TILED=YES", "COMPRESS=DEFLATE"])
    from mlin_qgis.core import raster_io
    from mlin_qgis.core.inputs import compute_stats
    ds = raster_io.open_raster(inp)
    info = raster_io.describe(ds, inp)
    stats = compute_stats(ds, info, raster_io.plan_bands(info))
    assert stats[1].valid_count == 1 and stats[1].fill == 90


def test_bad_band_choices(tiny_model: Path, rgb_u8: Path, tmp_path: Path) -> None:
    common = dict(input_path=rgb_u8, output_path=tmp_path / "out.tif", scale=2, model=tiny_model)
    expect_refusal(tmp_path, r"band\(s\) \[5\] do not exist", bands=[1, 2, 5], **common)
    expect_refusal(tmp_path, "repeat a band", bands=[1, 1, 2], **common)
    expect_refusal(tmp_path, "give 3 band numbers", bands=[1, 2], **common)
    expect_refusal(tmp_path, "either a band list or", bands=[1, 2, 3], all_bands=True, **common)
    expect_refusal(tmp_path, "tile size", tile_size=0, **common)
    expect_refusal(tmp_path, "tile size", tile_size=2.5, **common)
    assert run(tiny_model, common["input_path"], tmp_path / "f.tif", 2.0, tile_size=16.0).tiles == 12


def test_alpha_band_cannot_be_fed(tiny_model: Path, make_raster, tmp_path: Path) -> None:
    data = np.full((4, H, W), 255, np.uint8)
    inp = make_raster(data, color_interp=RGB + [gdal.GCI_AlphaBand])
    expect_refusal(tmp_path, "is the alpha band", input_path=inp, output_path=tmp_path / "out.tif",
                   scale=2, model=tiny_model, bands=[1, 2, 4])


# -- estimate -------------------------------------------------------------------------------------
def test_estimate(tiny_model: Path, rgb_u8: Path, tmp_path: Path) -> None:
    est = estimate(rgb_u8, 2.7, model=tiny_model)
    assert isinstance(est, Estimate)
    assert (est.height, est.width) == (108, 140)
    assert est.bytes == estimate_bytes(140, 108, 3, 1) and est.seconds > 0
    run(tiny_model, rgb_u8, tmp_path / "out.tif", 2.7)
    real = (tmp_path / "out.tif").stat().st_size
    assert real <= est.bytes
    measured = estimate(rgb_u8, 2.7, model=tiny_model)
    # now from this machine's measured throughput, not the built-in guess
    from mlin_qgis.core.calibration import measured_throughput
    from mlin_qgis.core.estimates import DEFAULT_MPX_PER_S
    from mlin_qgis.core.models import resolve_model

    rate = measured_throughput(resolve_model(tiny_model), "CPUExecutionProvider")
    assert rate is not None and rate != DEFAULT_MPX_PER_S["CPUExecutionProvider"]
    assert measured.seconds == pytest.approx(140 * 108 / 1e6 / rate)
    with pytest.raises(MlinError, match="greater than 1"):
        estimate(rgb_u8, 0.9)


def test_palette_raster_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "in.tif", np.zeros((1, H, W), np.uint8))
    ds = gdal.Open(str(path), gdal.GA_Update)
    table = gdal.ColorTable()
    table.SetColorEntry(0, (10, 20, 30, 255))
    ds.GetRasterBand(1).SetRasterColorTable(table)
    ds.GetRasterBand(1).SetColorInterpretation(gdal.GCI_PaletteIndex)
    ds = None
    expect_refusal(tmp_path, "expand the palette to RGB", input_path=path, output_path=tmp_path / "out.tif",
                   scale=2, model=tiny_model)


def test_plain_image_stays_without_georeferencing(tiny_model: Path, tmp_path: Path) -> None:
    data = np.rint(smooth_image(H, W) * 255).astype(np.uint8)
    ds = gdal.GetDriverByName("GTiff").Create(str(tmp_path / "in.tif"), W, H, 3, gdal.GDT_Byte)
    for i in range(3):
        ds.GetRasterBand(i + 1).WriteArray(data[i])
    ds = None
    run(tiny_model, tmp_path / "in.tif", tmp_path / "out.tif", 2.5)
    out = gdal.Open(str(tmp_path / "out.tif"))
    assert out.GetGeoTransform(can_return_null=True) is None and out.GetProjection() == ""


def test_gcps_move_to_the_output_grid(tiny_model: Path, tmp_path: Path) -> None:
    data = np.rint(smooth_image(H, W) * 255).astype(np.uint8)
    ds = gdal.GetDriverByName("GTiff").Create(str(tmp_path / "in.tif"), W, H, 3, gdal.GDT_Byte)
    for i in range(3):
        ds.GetRasterBand(i + 1).WriteArray(data[i])
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    ds.SetGCPs([gdal.GCP(17.0, 52.0, 0, 0, 0), gdal.GCP(17.1, 52.0, 0, W, 0), gdal.GCP(17.0, 51.9, 0, 0, H),
                gdal.GCP(17.1, 51.9, 0, W, H)], srs.ExportToWkt())
    ds = None
    run(tiny_model, tmp_path / "in.tif", tmp_path / "out.tif", 2.7)
    out = gdal.Open(str(tmp_path / "out.tif"))
    gcps = out.GetGCPs()
    assert len(gcps) == 4 and out.GetGCPProjection()
    assert (gcps[3].GCPPixel, gcps[3].GCPLine) == pytest.approx((out.RasterXSize, out.RasterYSize))
    assert (gcps[3].GCPX, gcps[3].GCPY) == (17.1, 51.9)


def test_compression_option_and_its_errors(tiny_model: Path, rgb_u8: Path, tmp_path: Path) -> None:
    from osgeo import gdal

    from mlin_qgis.core import raster_io

    run(tiny_model, rgb_u8, tmp_path / "deflate.tif", 2.0)
    lzw = tmp_path / "lzw.tif"
    superresolve(SuperResolveRequest(rgb_u8, lzw, 2.0, model=tiny_model, compression="lzw"))
    assert gdal.Open(str(lzw)).GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] == "LZW"
    assert np.array_equal(gdal.Open(str(lzw)).ReadAsArray(), gdal.Open(str(tmp_path / "deflate.tif")).ReadAsArray())
    with pytest.raises(MlinError, match="unknown compression 'jpeg2000'; choose one of DEFLATE, ZSTD, LZW, NONE"):
        superresolve(SuperResolveRequest(rgb_u8, tmp_path / "bad.tif", 2.0, model=tiny_model, compression="jpeg2000"))
    assert not (tmp_path / "bad.tif").exists() and raster_io.DEFAULT_COMPRESSION == "DEFLATE"


def test_cancel_mid_tile_stops_before_the_tiles_remaining_chunks(tiny_model: Path, make_raster,
                                                                 tmp_path: Path) -> None:
    from mlin_qgis.core.errors import MlinCancelled

    src = make_raster(np.rint(smooth_image(40, 40) * 255).astype(np.uint8), name="one_tile.tif")
    out = tmp_path / "cancelled.tif"
    progress: list = []
    full: list = []
    superresolve(SuperResolveRequest(src, tmp_path / "full.tif", 4.0, model=tiny_model, tile_size=512),
                 progress=lambda f, m: full.append(f))
    chunks = len(full) - 2  # one call before the tile, one per decoder chunk, one at the end of the tile
    assert chunks >= 5, "the tile must take several decoder calls for this test to mean anything"
    calls = {"n": 0}

    def cancel_on_third_check() -> bool:
        calls["n"] += 1
        return calls["n"] >= 3  # before the tile, after chunk 1, after chunk 2: cancel

    with pytest.raises(MlinCancelled):
        superresolve(SuperResolveRequest(src, out, 4.0, model=tiny_model, tile_size=512),
                     progress=lambda f, m: progress.append(f), is_cancelled=cancel_on_third_check)
    assert len(progress) == 1 + 1  # the start, then chunk 1's progress; chunk 2 was the last decoder call
    assert 0 < progress[-1] < 1 and calls["n"] == 3
    assert not out.exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_row_bands_write_the_same_bytes_as_every_window_then_close(tmp_path) -> None:
    """The row buffer that keeps memory flat (whole rows of GeoTIFF blocks, flushed as they complete) must
    give the very bytes of writing every tile's window as it comes and letting GDAL flush at close."""
    from mlin_qgis.core import raster_io
    from mlin_qgis.core.band_writer import RowBands, write_mask
    from mlin_qgis.core.normalise import dtype_info

    h, w = 600, 530  # several 256-px block rows, ragged last tile row and column
    data = np.rint(smooth_image(h, w) * 255).astype(np.uint8)
    mask = np.where(data[0] > 40, 255, 0).astype(np.uint8)
    dtype = dtype_info(gdal.GDT_Byte)
    windows = [(r, c, min(70, h - r), min(90, w - c)) for r in range(0, h, 70) for c in range(0, w, 90)]
    files = {}
    for buffered in (True, False):
        path = tmp_path / f"out_{buffered}.tif"
        ds = raster_io.create_gtiff(path, w, h, 3, dtype, raster_io.gtiff_options(dtype, rgb=True))
        raster_io.create_internal_mask(ds)
        values = RowBands(lambda a, y: raster_io.write_window(ds, a, 0, y), 3, w, np.dtype(np.uint8))
        masks = RowBands(lambda a, y: write_mask(ds, a[0], 0, y), 1, w, np.dtype(np.uint8))
        for k, (r, c, rows, cols) in enumerate(windows):
            if buffered and k and r != windows[k - 1][0]:
                if values.complete_to(r) | masks.complete_to(r):
                    ds.FlushCache()
            part = data[:, r:r + rows, c:c + cols]
            if buffered:
                values.put(part, r, c)
                masks.put(mask[None, r:r + rows, c:c + cols], r, c)
            else:
                raster_io.write_window(ds, part, c, r)
                write_mask(ds, mask[r:r + rows, c:c + cols], c, r)
        if buffered:
            values.complete_to(None)
            masks.complete_to(None)
        raster_io.close(ds)
        ds = None
        files[buffered] = path.read_bytes()
    assert files[True] == files[False]
