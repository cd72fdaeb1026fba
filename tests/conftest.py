"""Shared test fixtures: small real GeoTIFFs written with GDAL and a tiny real ONNX model pair.

The tiny model is built with ``onnx.helper`` (no torch) and follows the exact I/O contract of
docs/ARCHITECTURE.md: ``encoder.onnx`` (image -> proj) and ``decoder.onnx`` (proj, coord, cell ->
rgb, weights, area_weights), with the card under ``metadata_props["mlin_card"]``. It is a small
real model, not a mock: a two-conv encoder (receptive field 2) whose codes also carry the input
colours, and a local-ensemble decoder (nearest 2x2 codes, a linear layer on coord/cell, meta
weights = softmax(learnt logits + log area weights)). Its output is close to bilinear
interpolation of the input plus a small learnt term, so value tests can check real numbers.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
# CI sets this (.ci/run): a test that needs ../shared then fails where it would otherwise skip.
REQUIRE_SHARED = os.environ.get("MLIN_REQUIRE_SHARED") == "1"
# Calibrations made by tests go to a throw-away folder, never to the user's cache.
os.environ.setdefault("MLIN_CACHE_DIR", tempfile.mkdtemp(prefix="mlin-test-cache-"))

from osgeo import gdal, osr  # noqa: E402


def needs_shared(*paths: Path) -> Callable[[Any], Any]:
    """Mark a test `shared` and skip it (naming the missing path) unless every path exists; in CI
    (MLIN_REQUIRE_SHARED=1) it runs, and fails."""
    missing = [p for p in paths if not Path(p).exists()]
    reason = f"../shared is absent: {missing[0]} not found" if missing else ""
    skip = pytest.mark.skipif(bool(missing) and not REQUIRE_SHARED, reason=reason)
    return lambda test: pytest.mark.shared(skip(test))


# Subsets by module (`pytest -m "not qgis"`, `-m torch`, ...); `shared` comes from needs_shared.
MODULE_MARKS = {
    "qgis": ("test_dialog_zoom", "test_plugin_load", "test_processing_exportonnx", "test_processing_qgis_process",
             "test_processing_superresolve"),
    "torch": ("test_default_model_quality",
              "test_bench_exact", "test_checkpoint_safety", "test_degradation", "test_evaluate", "test_export",
              "test_images", "test_model", "test_resize", "test_train", "test_artefacts"),
    "slow": ("test_processing_qgis_process", "test_plugin_load", "test_train"),
}


def pytest_collection_modifyitems(config: Any, items: list) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        for mark, modules in MODULE_MARKS.items():
            if module in modules:
                item.add_marker(getattr(pytest.mark, mark))
        if "shared" in item.keywords or (module == "test_engine_shared"):
            item.add_marker(pytest.mark.shared)


def skip_without_shared(path: Path) -> None:
    """Inside a test: skip when ``path`` (in ../shared) is absent; in CI, fail instead."""
    if not Path(path).exists():
        message = f"../shared is absent: {path} not found"
        if REQUIRE_SHARED:
            pytest.fail(message + " (MLIN_REQUIRE_SHARED=1: CI must run every shared test)")
        pytest.skip(message)

TINY_CARD = {
    "name": "tiny-test", "version": "1", "method": "mlin", "weighting": "meta", "encoder": "tiny-conv",
    "input_mean": [0.5, 0.5, 0.5], "input_std": [0.5, 0.5, 0.5],
    "output_mean": [0.5, 0.5, 0.5], "output_std": [0.5, 0.5, 0.5],
    "bands": ["red", "green", "blue"], "trained_scale_min": 1.0, "trained_scale_max": 4.0,
    "recommended_max_scale": 6.0, "hard_max_scale": 12.0, "receptive_field": 2, "feature_channels": 8,
    "training_data": "none: random weights (test fixture)", "training_budget": "none", "quality": {},
    "licence": "same as the project", "description": "tiny stand-in model for fast engine tests",
}


def _d4_symmetric(w: np.ndarray) -> np.ndarray:
    """The average of a (out, in, k, k) kernel over the 8 flips/transposes of its window."""
    views = [w, w[..., ::-1, :], w[..., :, ::-1], w[..., ::-1, ::-1]]
    views += [v.swapaxes(-1, -2) for v in views]
    return np.mean(views, axis=0)


def build_tiny_model(folder: Path, card: dict | None = None, channels: int = 8, latent: int = 6,
                     seed: int = 0, opset: int = 17, symmetric: bool = False) -> Path:
    """Write a tiny real encoder.onnx + decoder.onnx pair into ``folder`` and return it.

    ``symmetric``: a model that commutes with flips and transposes (D4-symmetric kernels, a decoder
    that ignores the relative coordinates and treats both cell axes alike, area weights only)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    c_extra = channels - 3
    card_json = json.dumps(TINY_CARD if card is None else card)

    def init(name: str, array: np.ndarray):
        return numpy_helper.from_array(np.asarray(array, np.float32 if array.dtype.kind == "f" else array.dtype), name)

    def finish(graph, path: Path) -> None:
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        entry = model.metadata_props.add()
        entry.key, entry.value = "mlin_card", card_json
        onnx.checker.check_model(model)
        onnx.save(model, str(path))

    # encoder: proj = concat(image, conv3(relu(conv2(relu(conv1(image))))))
    w1 = rng.normal(0, 0.3, (latent, 3, 3, 3)); b1 = rng.normal(0, 0.1, latent)
    w2 = rng.normal(0, 0.2, (latent, latent, 3, 3)); b2 = rng.normal(0, 0.1, latent)
    w3 = rng.normal(0, 0.2, (c_extra, latent, 3, 3)); b3 = rng.normal(0, 0.1, c_extra)
    if symmetric:
        w1, w2, w3 = _d4_symmetric(w1), _d4_symmetric(w2), _d4_symmetric(w3)
    conv = dict(pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], **conv),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], **conv),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], **conv),
        helper.make_node("Concat", ["image", "c3"], ["proj"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_encoder",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("proj", TensorProto.FLOAT, [1, channels, "h", "w"])],
        [init("w1", w1), init("b1", b1), init("w2", w2), init("b2", b2), init("w3", w3), init("b3", b3)])
    finish(graph, folder / "encoder.onnx")

    # decoder: LIIF-style local ensemble over the 4 nearest codes
    wrc = rng.normal(0, 0.5, (4, c_extra)); wout = rng.normal(0, 0.05, (c_extra, 3)); bout = rng.normal(0, 0.02, 3)
    wm = rng.normal(0, 0.3, (c_extra, 1))
    if symmetric:
        wrc[0:2] = 0.0
        wrc[3] = wrc[2]
        wm[:] = 0.0
    inits = [init("wrc", wrc), init("wout", wout), init("bout", bout), init("wm", wm),
             numpy_helper.from_array(np.array([channels, -1], np.int64), "shape_cn"),
             numpy_helper.from_array(np.array([-1], np.int64), "shape_n"),
             numpy_helper.from_array(np.array(2, np.int64), "i2"),
             numpy_helper.from_array(np.array(3, np.int64), "i3"),
             numpy_helper.from_array(np.array([0], np.int64), "s0"),
             numpy_helper.from_array(np.array([1], np.int64), "s1"),
             numpy_helper.from_array(np.array([2], np.int64), "s2"),
             numpy_helper.from_array(np.array([3], np.int64), "s3"),
             numpy_helper.from_array(np.array([channels], np.int64), "sc"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half"),
             numpy_helper.from_array(np.array(-0.5, np.float32), "mhalf"),
             numpy_helper.from_array(np.array(1e-9, np.float32), "tiny")]
    n = [
        helper.make_node("Shape", ["proj"], ["shp"]),
        helper.make_node("Gather", ["shp", "i2"], ["h_i"]),
        helper.make_node("Gather", ["shp", "i3"], ["w_i"]),
        helper.make_node("Cast", ["h_i"], ["h_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["w_i"], ["w_f"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["h_f", "one"], ["h_max"]),
        helper.make_node("Sub", ["w_f", "one"], ["w_max"]),
        helper.make_node("Reshape", ["proj", "shape_cn"], ["proj_cn"]),
        helper.make_node("Transpose", ["proj_cn"], ["table"], perm=[1, 0]),
        helper.make_node("Slice", ["coord", "s0", "s1", "s1"], ["cy"]),
        helper.make_node("Slice", ["coord", "s1", "s2", "s1"], ["cx"]),
    ]
    preds, logits, areas = [], [], []
    for k, (vy, vx) in enumerate([(-1, -1), (-1, 1), (1, -1), (1, 1)]):
        sy, sx = ("mhalf" if vy < 0 else "half"), ("mhalf" if vx < 0 else "half")
        p = f"k{k}_"
        n += [
            helper.make_node("Add", ["cy", sy], [p + "sy"]),
            helper.make_node("Add", ["cx", sx], [p + "sx"]),
            helper.make_node("Add", [p + "sy", "half"], [p + "sy2"]),
            helper.make_node("Add", [p + "sx", "half"], [p + "sx2"]),
            helper.make_node("Floor", [p + "sy2"], [p + "fy"]),
            helper.make_node("Floor", [p + "sx2"], [p + "fx"]),
            helper.make_node("Max", [p + "fy", "zero"], [p + "fy1"]),
            helper.make_node("Min", [p + "fy1", "h_max"], [p + "iy"]),
            helper.make_node("Max", [p + "fx", "zero"], [p + "fx1"]),
            helper.make_node("Min", [p + "fx1", "w_max"], [p + "ix"]),
            helper.make_node("Cast", [p + "iy"], [p + "iy_i"], to=TensorProto.INT64),
            helper.make_node("Cast", [p + "ix"], [p + "ix_i"], to=TensorProto.INT64),
            helper.make_node("Mul", [p + "iy_i", "w_i"], [p + "row"]),
            helper.make_node("Add", [p + "row", p + "ix_i"], [p + "flat2"]),
            helper.make_node("Reshape", [p + "flat2", "shape_n"], [p + "flat"]),
            helper.make_node("Gather", ["table", p + "flat"], [p + "q"], axis=0),
            helper.make_node("Slice", [p + "q", "s0", "s3", "s1"], [p + "q_rgb"]),
            helper.make_node("Slice", [p + "q", "s3", "sc", "s1"], [p + "q_lat"]),
            helper.make_node("Sub", ["cy", p + "iy"], [p + "ry"]),
            helper.make_node("Sub", ["cx", p + "ix"], [p + "rx"]),
            helper.make_node("Concat", [p + "ry", p + "rx", "cell"], [p + "inp"], axis=1),
            helper.make_node("MatMul", [p + "inp", "wrc"], [p + "lin"]),
            helper.make_node("Add", [p + "q_lat", p + "lin"], [p + "pre"]),
            helper.make_node("Relu", [p + "pre"], [p + "hid"]),
            helper.make_node("MatMul", [p + "hid", "wout"], [p + "mo"]),
            helper.make_node("Add", [p + "mo", "bout"], [p + "mo2"]),
            helper.make_node("Add", [p + "q_rgb", p + "mo2"], [p + "pred"]),
            helper.make_node("MatMul", [p + "hid", "wm"], [p + "logit"]),
            helper.make_node("Mul", [p + "ry", p + "rx"], [p + "ar"]),
            helper.make_node("Abs", [p + "ar"], [p + "ar1"]),
            helper.make_node("Add", [p + "ar1", "tiny"], [p + "area"]),
        ]
        preds.append(p + "pred"); logits.append(p + "logit"); areas.append(p + "area")
    n += [
        helper.make_node("Concat", areas[::-1], ["area_sw"], axis=1),  # LIIF's diagonal swap
        helper.make_node("ReduceSum", ["area_sw", "s1"], ["area_tot"], keepdims=1),
        helper.make_node("Div", ["area_sw", "area_tot"], ["area_weights"]),
        helper.make_node("Log", ["area_weights"], ["log_aw"]),
        helper.make_node("Concat", logits, ["logits"], axis=1),
        helper.make_node("Add", ["logits", "log_aw"], ["logits2"]),
        helper.make_node("Softmax", ["logits2"], ["weights"], axis=1),
    ]
    terms = []
    for k, pred in enumerate(preds):
        n += [helper.make_node("Slice", ["weights", f"s{k}", f"s{k + 1}" if k < 3 else "sc", "s1"], [f"wk{k}"]),
              helper.make_node("Mul", [pred, f"wk{k}"], [f"term{k}"])]
        terms.append(f"term{k}")
    n.append(helper.make_node("Sum", terms, ["rgb"]))
    graph = helper.make_graph(
        n, "tiny_decoder",
        [helper.make_tensor_value_info("proj", TensorProto.FLOAT, [1, channels, "h", "w"]),
         helper.make_tensor_value_info("coord", TensorProto.FLOAT, ["n", 2]),
         helper.make_tensor_value_info("cell", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("rgb", TensorProto.FLOAT, ["n", 3]),
         helper.make_tensor_value_info("weights", TensorProto.FLOAT, ["n", 4]),
         helper.make_tensor_value_info("area_weights", TensorProto.FLOAT, ["n", 4])],
        inits)
    finish(graph, folder / "decoder.onnx")
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of the tiny real model (encoder.onnx + decoder.onnx with a card)."""
    pytest.importorskip("onnx", reason="the `onnx` package builds the tiny test model")
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-test")


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Build tiny-model variants (other card values), each in its own folder."""
    pytest.importorskip("onnx", reason="the `onnx` package builds the tiny test model")
    counter = iter(range(10**6))

    def make(card: dict | None = None, **kwargs) -> Path:
        return build_tiny_model(tmp_path_factory.mktemp("models") / f"variant{next(counter)}", card, **kwargs)

    return make


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    """The exported official LIIF model in models/ (skips until it is shipped)."""
    folder = REPO / "models" / "liif-edsr-div2k"
    if not ((folder / "encoder.onnx").is_file() and (folder / "decoder.onnx").is_file()):
        pytest.skip("models/liif-edsr-div2k is not shipped yet (make export-liif)")
    return folder


# -- rasters ------------------------------------------------------------------------------------
UTM33N_GT = (638838.7, 0.5, 0.0, 5802604.9, 0.0, -0.5)
NP_TO_GDAL = {np.dtype(np.uint8): gdal.GDT_Byte, np.dtype(np.uint16): gdal.GDT_UInt16,
              np.dtype(np.int16): gdal.GDT_Int16, np.dtype(np.float32): gdal.GDT_Float32,
              np.dtype(np.float64): gdal.GDT_Float64, np.dtype(np.int32): gdal.GDT_Int32}


def write_geotiff(path: Path, data: np.ndarray, geotransform: Sequence[float] = UTM33N_GT, epsg: int = 32633,
                  nodata: float | None = None, color_interp: Sequence[int] | None = None,
                  descriptions: Sequence[str] | None = None, options: Sequence[str] = ()) -> Path:
    """Write ``data`` (bands, h, w) as a georeferenced GeoTIFF with GDAL; returns the path."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    bands, h, w = data.shape
    ds = gdal.GetDriverByName("GTiff").Create(str(path), w, h, bands, NP_TO_GDAL[data.dtype], list(options))
    ds.SetGeoTransform(list(geotransform))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds.SetProjection(srs.ExportToWkt())
    for i in range(bands):
        band = ds.GetRasterBand(i + 1)
        if nodata is not None:
            band.SetNoDataValue(float(nodata))
        if color_interp is not None:
            band.SetColorInterpretation(color_interp[i])
        if descriptions is not None:
            band.SetDescription(descriptions[i])
        band.WriteArray(data[i])
    ds.FlushCache()
    ds = None
    return Path(path)


def smooth_image(h: int, w: int, bands: int = 3, seed: int = 0) -> np.ndarray:
    """A float image in [0, 1] with gentle structure (gradients + blobs), deterministic."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = []
    for b in range(bands):
        fy, fx, ph = rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3), rng.uniform(0, 6)
        v = 0.5 + 0.3 * np.sin(fy * yy + ph) * np.cos(fx * xx) + 0.1 * (xx / w - yy / h)
        out.append(v)
    img = np.stack(out) + rng.normal(0, 0.03, (bands, h, w))
    return np.clip(img, 0, 1)


@pytest.fixture
def make_raster(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_raster(data, name="in.tif", **write_geotiff_kwargs)`` writes into tmp_path."""
    def make(data: np.ndarray, name: str = "in.tif", **kwargs) -> Path:
        return write_geotiff(tmp_path / name, data, **kwargs)
    return make
