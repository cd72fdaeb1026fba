"""Radiometric fidelity (issue 32): with ``fidelity`` the output's area average over each input pixel
gives back that pixel; every output carries a FIDELITY report. Real GDAL files and real onnxruntime
(the tiny model, whose random weights are far from the input: large corrections, some saturation).
Expectations come from a dense area-averaging matrix built here by brute force with exact fractions,
never from the code under test."""
from __future__ import annotations

import argparse
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from conftest import UTM33N_GT, smooth_image, write_geotiff
from mlin_qgis.core import fidelity
from mlin_qgis.core.cli_sr import add_arguments, run
from mlin_qgis.core.fidelity_report import FidelityReport
from mlin_qgis.core.pipeline import SuperResolveRequest, superresolve

pytest_plugins = ["qgis_fixtures"]

H, W = 23, 29
SCALES = [2.0, 2.5, 3.7, 4.0]
LIMITS = {np.dtype(np.uint8): (0, 255), np.dtype(np.uint16): (0, 65535), np.dtype(np.int16): (-32768, 32767)}


def dense_area(n_in: int, n_out: int) -> np.ndarray:
    """A[i, j] = overlap length of output j ([j n_in/n_out, (j+1) n_in/n_out)) with input i ([i, i+1))."""
    a = np.zeros((n_in, n_out))
    for j in range(n_out):
        lo, hi = Fraction(j * n_in, n_out), Fraction((j + 1) * n_in, n_out)
        for i in range(math.floor(lo), min(n_in, math.ceil(hi))):
            a[i, j] = float(max(Fraction(0), min(hi, Fraction(i + 1)) - max(lo, Fraction(i))))
    return a


def nearest(n_in: int, n_out: int) -> np.ndarray:
    """Input pixel under each output pixel's centre."""
    return np.array([min(n_in - 1, math.floor(Fraction(2 * r + 1, 2) * Fraction(n_in, n_out)))
                     for r in range(n_out)])


def check_averages(inp: np.ndarray, out: np.ndarray, valid_in: np.ndarray,
                   nodata: float | None = None) -> dict[str, np.ndarray]:
    """Area averages of ``out`` on ``inp``'s grid, the input pixels whose footprint is wholly valid,
    and those whose footprint touches a pixel at the limits a valid value can take (the data type's,
    less a nodata value at one end of it: no valid pixel may read as nodata)."""
    (h, w), (oh, ow) = inp.shape[1:], out.shape[1:]
    ar, ac = dense_area(h, oh), dense_area(w, ow)
    avg = np.einsum("ij,bjk,lk->bil", ar, out.astype(np.float64), ac)
    out_valid = valid_in[np.ix_(nearest(h, oh), nearest(w, ow))]
    interior = valid_in & (ar @ (~out_valid).astype(float) @ ac.T <= 0)
    touched = np.zeros(avg.shape, bool)
    if out.dtype in LIMITS:
        lo, hi = LIMITS[out.dtype]
        lo, hi = (lo + 1 if nodata == lo else lo), (hi - 1 if nodata == hi else hi)
        touched = np.einsum("ij,bjk,lk->bil", ar, ((out <= lo) | (out >= hi)).astype(float), ac) > 0
    return {"err": avg - inp.astype(np.float64), "interior": interior, "touched": touched}


def make_input(tmp_path: Path, kind: str, h: int = H, w: int = W,
               seed: int = 0) -> tuple[Path, np.ndarray, np.ndarray, float | None]:
    """(path, data bands, validity, nodata) of a raster with a hole of nodata or alpha 0 in it."""
    base = smooth_image(h, w, seed=seed)
    hole = np.zeros((h, w), bool)
    hole[5:9, 7:15] = True
    hole[-3:, -4:] = True
    if kind == "uint8-alpha":
        data = np.clip(np.rint(base * 300 - 20), 0, 255).astype(np.uint8)  # saturated areas at 0 and 255
        alpha = np.where(hole, 0, 255).astype(np.uint8)
        path = write_geotiff(tmp_path / "in.tif", np.concatenate([data, alpha[None]]),
                             color_interp=[gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand, gdal.GCI_AlphaBand],
                             options=["PHOTOMETRIC=RGB", "ALPHA=YES"])
        return path, data, ~hole, None
    if kind == "uint8-nodata":
        data = np.clip(np.rint(base * 300 - 20), 1, 255).astype(np.uint8)
        data[:, hole] = 0
        nodata: float = 0
    elif kind == "uint16-nodata":
        data = np.rint(base * 60000 + 200).astype(np.uint16)
        data[:, hole] = 0
        nodata = 0
    elif kind == "int16-nodata":
        data = np.rint(base * 20000 - 9000).astype(np.int16)
        data[:, hole] = -32768
        nodata = -32768
    else:  # float32 reflectance-like values
        data = (base * 3000).astype(np.float32)
        data[:, hole] = -9999
        nodata = -9999
    return write_geotiff(tmp_path / "in.tif", data, nodata=nodata), data, ~hole, nodata


def read(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    ds = gdal.Open(str(path))
    return ds.ReadAsArray(), ds.GetMetadata()


# -- the numerics against the dense minimum-norm solution -------------------------------------------
@pytest.mark.parametrize("scale", [1.3, 2.5, 3.7, 4.0])
def test_correction_is_the_minimum_norm_solution(scale: float) -> None:
    rng = np.random.default_rng(1)
    h, w = 9, 11
    oh, ow = round(h * scale), round(w * scale)
    x, y = rng.normal(size=(2, oh, ow)), rng.normal(size=(2, h, w))
    got = fidelity.correct(x, y, fidelity.axis_area(h, oh, 0, h), fidelity.axis_area(w, ow, 0, w))
    a = np.kron(dense_area(h, oh), dense_area(w, ow))
    flat = x.reshape(2, -1)
    want = flat + (a.T @ np.linalg.solve(a @ a.T, y.reshape(2, -1).T - a @ flat.T)).T
    assert np.abs(got.reshape(2, -1) - want).max() < 1e-10


def test_masked_pixels_neither_constrain_nor_receive() -> None:
    rng = np.random.default_rng(2)
    h, w, oh, ow = 10, 12, 25, 30
    x, y = rng.normal(size=(1, oh, ow)), rng.normal(size=(1, h, w))
    valid_in = np.ones((h, w), bool)
    valid_in[3:6, 4:8] = False
    valid_out = valid_in[np.ix_(nearest(h, oh), nearest(w, ow))]
    got = fidelity.correct(x, y, fidelity.axis_area(h, oh, 0, h), fidelity.axis_area(w, ow, 0, w), valid_in, valid_out)
    assert np.array_equal(got[0][~valid_out], x[0][~valid_out])  # masked outputs keep their value
    res = check_averages(y, got, valid_in)
    assert np.abs(res["err"][0][res["interior"]]).max() < 1e-10
    assert (~res["interior"] & valid_in).any()  # the footprints that see the hole were not constrained


# -- the sr pipeline ------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kind", ["uint8-nodata", "uint8-alpha", "uint16-nodata", "int16-nodata", "float32-nodata"])
def test_output_averages_back_to_the_input(tiny_model: Path, tmp_path: Path, kind: str, scale: float) -> None:
    inp, data, valid, nodata = make_input(tmp_path, kind)
    result = superresolve(SuperResolveRequest(inp, tmp_path / "out.tif", scale, model=tiny_model, tile_size=10,
                                              fidelity=True))
    out, meta = read(result.output_path)
    out = out[:3]
    res = check_averages(data, out, valid, nodata)
    err, inner, touched = np.abs(res["err"]), res["interior"][None], res["touched"]
    assert inner.sum() > 0.7 * valid.size
    report = FidelityReport.from_metadata(meta)
    assert report is not None and report.corrected and report.bands == [1, 2, 3]
    if kind.startswith("float"):
        assert err[np.broadcast_to(inner, err.shape)].max() < 1e-3  # float units, nothing rounded
        assert report.saturated == [0, 0, 0]
        return
    ok = inner & ~touched
    assert err[ok].max() <= 0.5 + 1e-6  # rounding each pixel moves its average by at most 0.5 DN
    broken = inner & touched & (err > 0.5 + 1e-6)  # clipping to the type's range broke it: counted
    assert report.saturated == [int(b.sum()) for b in broken]
    # the report says what the file says, over the same pixels
    for k in range(3):
        e = res["err"][k][res["interior"]]
        assert report.pixels[k] == e.size
        assert report.rms[k] == pytest.approx(np.sqrt(np.mean(e ** 2)), rel=1e-4, abs=1e-9)
        assert report.max[k] == pytest.approx(np.abs(e).max(), rel=1e-4, abs=1e-9)


@pytest.mark.parametrize("scale", [2.0, 2.5])
def test_saturated_pixels_are_counted(tiny_model: Path, tmp_path: Path, scale: float) -> None:
    """Hard 0/255 edges: the correction asks for values beyond the type's range; those input pixels
    are reported, and every other one still averages back within 0.5 DN."""
    yy, xx = np.mgrid[0:H, 0:W]
    data = np.where(((yy // 3) + (xx // 4)) % 2 == 0, 250, 4).astype(np.uint8)[None].repeat(3, axis=0)
    inp = write_geotiff(tmp_path / "edges.tif", data)
    result = superresolve(SuperResolveRequest(inp, tmp_path / "out.tif", scale, model=tiny_model, tile_size=10,
                                              fidelity=True))
    res = check_averages(data, read(result.output_path)[0], np.ones((H, W), bool))
    err = np.abs(res["err"])
    broken = res["touched"] & (err > 0.5 + 1e-6)
    assert result.fidelity is not None and sum(result.fidelity.saturated) == broken.sum() > 0
    assert err[~res["touched"]].max(initial=0.0) <= 0.5 + 1e-6 and (~res["touched"]).any()
    assert "saturated" in result.fidelity.describe()


def test_report_without_the_option(tiny_model: Path, tmp_path: Path) -> None:
    inp, data, valid, nodata = make_input(tmp_path, "uint16-nodata")
    plain = superresolve(SuperResolveRequest(inp, tmp_path / "plain.tif", 2.5, model=tiny_model, tile_size=10))
    out, meta = read(plain.output_path)
    report = FidelityReport.from_metadata(meta)
    assert report is not None and not report.corrected and plain.fidelity is not None
    res = check_averages(data, out, valid, nodata)
    for k in range(3):
        e = res["err"][k][res["interior"]]
        assert report.rms[k] == pytest.approx(np.sqrt(np.mean(e ** 2)), rel=1e-4)
        assert report.max[k] == pytest.approx(np.abs(e).max(), rel=1e-4)
    assert min(report.max) > 1.0  # the tiny model does not average back by itself
    fixed = superresolve(SuperResolveRequest(inp, tmp_path / "fixed.tif", 2.5, model=tiny_model, tile_size=10,
                                             fidelity=True))
    assert max(fixed.fidelity.max) <= 0.5 + 1e-6 < min(report.max)
    # rows never fed to the meter are read back from the output at the end: the same report
    from mlin_qgis.core import raster_io
    from mlin_qgis.core.engine import open_engine
    from mlin_qgis.core.fidelity_report import FidelityMeter
    from mlin_qgis.core.run_plan import plan_run

    request = SuperResolveRequest(inp, tmp_path / "again.tif", 2.5, model=tiny_model, tile_size=10)
    plan, _ = plan_run(request, raster_io.open_raster(inp), lambda spec: open_engine(spec, device="cpu"))
    read_back = FidelityMeter(plan).finish(gdal.Open(str(plain.output_path)))
    assert read_back.metadata() == {k: v for k, v in meta.items() if k.startswith("FIDELITY_")}


@pytest.mark.parametrize("kind, scale, tol", [("uint16-nodata", 2.5, 1), ("uint8-alpha", 3.7, 1),
                                              ("float32-nodata", 3.7, 1e-3), ("uint8-nodata", 1.3, 1)])
def test_tiled_equals_whole_and_area_equals_window(tiny_model: Path, tmp_path: Path, kind: str, scale: float,
                                                   tol: float) -> None:
    inp, *_ = make_input(tmp_path, kind, h=41, w=47, seed=3)
    whole = superresolve(SuperResolveRequest(inp, tmp_path / "whole.tif", scale, model=tiny_model, fidelity=True))
    tiled = superresolve(SuperResolveRequest(inp, tmp_path / "tiled.tif", scale, model=tiny_model, tile_size=8,
                                             fidelity=True))
    a, b = read(whole.output_path)[0].astype(np.float64), read(tiled.output_path)[0].astype(np.float64)
    assert whole.tiles == 1 and tiled.tiles > 20
    assert np.abs(a - b).max() <= tol
    x0, y0, res = UTM33N_GT[0], UTM33N_GT[3], UTM33N_GT[1]
    extent = (x0 + 11.3 * res, y0 - 30.2 * res, x0 + 33.6 * res, y0 - 6.5 * res)  # cols 11-33, rows 6-30
    part = superresolve(SuperResolveRequest(inp, tmp_path / "part.tif", scale, model=tiny_model, tile_size=8,
                                            extent=extent, fidelity=True))
    ds_w, ds_p = gdal.Open(str(whole.output_path)), gdal.Open(str(part.output_path))
    c0 = round((ds_p.GetGeoTransform()[0] - ds_w.GetGeoTransform()[0]) / ds_w.GetGeoTransform()[1])
    r0 = round((ds_p.GetGeoTransform()[3] - ds_w.GetGeoTransform()[3]) / ds_w.GetGeoTransform()[5])
    window = a[:, r0:r0 + ds_p.RasterYSize, c0:c0 + ds_p.RasterXSize]
    assert c0 > 0 and r0 > 0 and np.abs(window - ds_p.ReadAsArray().astype(np.float64)).max() <= tol
    assert FidelityReport.from_metadata(ds_p.GetMetadata()) is not None


def test_cluster_equals_single_process(tiny_model: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed", reason="dask[distributed] is in requirements-dev.txt")
    from mlin_qgis.core.cluster import ClusterConfig, ClusterSession, superresolve_on_cluster

    inp, *_ = make_input(tmp_path, "uint8-nodata", h=60, w=76, seed=5)
    single = superresolve(SuperResolveRequest(inp, tmp_path / "single.tif", 2.5, model=tiny_model, fidelity=True))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as lc:
        with ClusterSession(ClusterConfig(address=lc.scheduler_address, block_px=64)) as session:
            result = superresolve_on_cluster(SuperResolveRequest(inp, tmp_path / "cluster.tif", 2.5, model=tiny_model,
                                                                 tile_size=12, threads=1, fidelity=True), session)
    assert result.blocks > 4
    a, meta_a = read(single.output_path)
    b, meta_b = read(result.output_path)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert meta_b["FIDELITY_CORRECTED"] == "YES" and result.fidelity is not None
    assert result.fidelity.pixels == single.fidelity.pixels
    assert max(result.fidelity.max) <= 0.5 + 1e-6 or sum(result.fidelity.saturated) > 0


def test_cli_fidelity_option_and_report(tiny_model: Path, tmp_path: Path, capsys) -> None:
    inp, *_ = make_input(tmp_path, "uint8-nodata")
    out = tmp_path / "cli.tif"
    args = add_arguments(argparse.ArgumentParser()).parse_args(
        [str(inp), str(out), "--scale", "3", "--model", str(tiny_model), "--fidelity", "--cog"])
    assert run(args) == 0
    printed = capsys.readouterr().out
    assert "fidelity: band 1: RMS" in printed and "(corrected)" in printed
    meta = read(out)[1]
    assert {"FIDELITY_RMS", "FIDELITY_MAX", "FIDELITY_SATURATED", "FIDELITY_CORRECTED"} <= set(meta)


# -- QGIS: the Processing parameter and the dialog's checkbox ---------------------------------------
def test_processing_parameter_and_report(mlin_provider, tiny_model: Path, tmp_path: Path) -> None:
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    inp, data, valid, nodata = make_input(tmp_path, "uint16-nodata")
    out, core = tmp_path / "alg.tif", tmp_path / "core.tif"
    feedback = QgsProcessingFeedback()
    infos: list[str] = []
    feedback.pushInfo = infos.append  # type: ignore[method-assign]
    result = processing.run("mlin:superresolve", {"INPUT": str(inp), "SCALE": 2.5, "FIDELITY": True,
                                                  "MODEL_FILE": str(tiny_model / "encoder.onnx"), "OUTPUT": str(out)},
                            feedback=feedback, context=QgsProcessingContext())
    superresolve(SuperResolveRequest(inp, core, 2.5, model=tiny_model, fidelity=True))
    assert np.array_equal(read(out)[0], read(core)[0])
    assert "(corrected)" in result["FIDELITY_REPORT"] and any("Fidelity" in line for line in infos)
    assert read(out)[1]["FIDELITY_CORRECTED"] == "YES"


def test_dialog_checkbox_runs_with_fidelity_and_shows_the_report(qgis_app, project, tiny_models_dir: Path,
                                                                 tmp_path: Path) -> None:
    from qgis.core import QgsRasterLayer

    from mlin_qgis.qgis_plugin.gui.zoom_dialog import ZoomDialog
    from qgis_fixtures import wait_until

    inp, *_ = make_input(tmp_path, "uint8-nodata")
    layer = QgsRasterLayer(str(inp), "Field", "gdal")
    project.addMapLayer(layer)
    dlg = ZoomDialog(iface=None)
    try:
        dlg.model_combo.setCurrentIndex(dlg.model_combo.findText("tiny-test"))
        dlg.layer_combo.setLayer(layer)
        dlg.fidelity_check.setChecked(True)
        out = tmp_path / "dialog.tif"
        dlg.output_widget.setFilePath(str(out))
        dlg.set_scale(2.0)
        assert dlg.start_run() is not None
        assert wait_until(lambda: dlg.task is None, 120), "the run task did not finish"
        text = dlg.status_label.text()
        assert text.startswith("Done:") and "Fidelity" in text and "(corrected)" in text, text
        assert read(out)[1]["FIDELITY_CORRECTED"] == "YES"
    finally:
        dlg.shutdown()
        wait_until(lambda: dlg.task is None and dlg.preview.task is None, 30)
        dlg.close()
        dlg.deleteLater()
