"""mlin:superresolve through real QGIS Processing (processing.run), real GeoTIFFs, real onnxruntime.

Most runs use the tiny real ONNX model of conftest.py (fast); one uses the shipped LIIF model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import UTM33N_GT, smooth_image, write_geotiff

pytest_plugins = ["qgis_fixtures"]

ALG = "mlin:superresolve"
PARAMETERS = ["INPUT", "EXTENT", "SCALE", "MODEL", "MODEL_FILE", "BANDS", "ALL_BANDS", "DEVICE", "TILE_SIZE",
              "ENSEMBLE", "PRECISION", "FIDELITY", "INPUT_LOOKS", "RESOLUTION", "CLUSTER", "WEIGHTS_MAP", "OUTPUT"]


@pytest.fixture
def rgb40(tmp_path: Path) -> Path:
    """A real 40x40 RGB uint8 GeoTIFF in UTM 33N with 0.5 m pixels."""
    data = (smooth_image(40, 40, 3, seed=1) * 255).round().astype(np.uint8)
    return write_geotiff(tmp_path / "rgb40.tif", data)


def raster_info(path: Path) -> dict:
    from qgis_fixtures import raster_info as info  # imported after pytest loaded it as a plugin

    return info(path)


def read_array(path: Path) -> np.ndarray:
    from qgis_fixtures import read_array as read

    return read(path)


def model_index(name: str) -> int:
    from qgis_fixtures import model_index as index

    return index(name)


def run(params: dict, feedback: Any = None) -> dict:
    import processing
    from qgis.core import QgsProcessingContext

    context = QgsProcessingContext()
    return processing.run(ALG, params, feedback=feedback, context=context)


def test_provider_and_algorithms_are_registered(mlin_provider) -> None:
    from qgis.core import QgsApplication

    provider = QgsApplication.processingRegistry().providerById("mlin")
    assert provider is not None and provider.name() == "MLIN super-resolution"
    assert not provider.icon().isNull()
    alg = QgsApplication.processingRegistry().algorithmById(ALG)
    assert alg is not None and alg.displayName() == "Super-resolve raster (MLIN)"
    assert [p.name() for p in alg.parameterDefinitions()] == PARAMETERS
    scale = alg.parameterDefinition("SCALE")
    assert scale.defaultValue() == 2 and scale.minimum() == pytest.approx(1.01)
    from mlin_qgis.qgis_plugin.processing.superresolve_algorithm import shipped_models

    caps = [e.card.hard_max_scale for e in shipped_models()]
    assert scale.maximum() == (max(caps) if caps else 16.0)
    assert alg.parameterDefinition("TILE_SIZE").flags() & alg.parameterDefinition("TILE_SIZE").FlagAdvanced
    assert alg.parameterDefinition("WEIGHTS_MAP").flags() & alg.parameterDefinition("WEIGHTS_MAP").FlagOptional
    assert alg.parameterDefinition("BANDS").allowMultiple()
    assert alg.parameterDefinition("BANDS").parentLayerParameterName() == "INPUT"
    assert alg.parameterDefinition("DEVICE").options() == ["auto", "cpu", "cuda"]
    help_text = alg.shortHelpString()
    for name in PARAMETERS:
        assert f"({name}" in help_text, f"the help does not explain {name}"
    assert QgsApplication.processingRegistry().algorithmById("mlin:exportonnx") is not None


def test_run_on_a_real_geotiff_keeps_georeferencing(mlin_provider, tiny_model: Path, rgb40: Path, tmp_path: Path) -> None:
    from qgis.core import QgsProcessingFeedback

    class Recorder(QgsProcessingFeedback):
        def __init__(self) -> None:
            super().__init__()
            self.infos: list = []
            self.progress_values: list = []
            self.progressChanged.connect(self.progress_values.append)

        def pushInfo(self, info: str) -> None:  # noqa: N802 - QGIS API
            self.infos.append(info)
            super().pushInfo(info)

    out = tmp_path / "out.tif"
    feedback = Recorder()
    result = run({"INPUT": str(rgb40), "SCALE": 2.5, "MODEL_FILE": str(tiny_model / "encoder.onnx"),
                  "OUTPUT": str(out)}, feedback)
    assert Path(result["OUTPUT"]) == out and out.is_file()
    assert (result["WIDTH"], result["HEIGHT"]) == (100, 100)
    assert result["PROVIDER"] == "CPUExecutionProvider"
    info = raster_info(out)
    assert (info["width"], info["height"], info["bands"], info["dtype"]) == (100, 100, 3, "Byte")
    assert info["epsg"] == 32633
    gt = info["geotransform"]
    assert gt[0] == pytest.approx(UTM33N_GT[0]) and gt[3] == pytest.approx(UTM33N_GT[3])
    assert gt[1] == pytest.approx(0.5 / 2.5) and gt[5] == pytest.approx(-0.5 / 2.5)
    # the algorithm's output is exactly the core pipeline's for the same input and model
    from mlin_qgis.core.pipeline import SuperResolveRequest, superresolve

    core = tmp_path / "core.tif"
    superresolve(SuperResolveRequest(rgb40, core, 2.5, model=tiny_model))
    assert np.array_equal(read_array(out), read_array(core))
    logged = "\n".join(feedback.infos)
    assert "CPUExecutionProvider" in logged and "100 × 100 px" in logged and "Mpx/s" in logged
    assert feedback.progress_values and max(feedback.progress_values) == pytest.approx(100.0)


def test_shipped_model_by_enum_index(mlin_provider, shipped_model: Path, rgb40: Path, tmp_path: Path) -> None:
    out = tmp_path / "liif.tif"
    index = model_index(shipped_model.name)
    result = run({"INPUT": str(rgb40), "SCALE": 2, "MODEL": index, "OUTPUT": str(out)})
    assert (result["WIDTH"], result["HEIGHT"]) == (80, 80)
    info = raster_info(out)
    assert (info["width"], info["height"], info["epsg"]) == (80, 80, 32633)
    assert info["geotransform"][1] == pytest.approx(0.25)
    # LIIF on a smooth image: the mean colour is preserved within a few levels
    assert abs(read_array(out).astype(float).mean() - read_array(rgb40).astype(float).mean()) < 4


def test_listed_tiny_model_bands_tiles_and_weights_map(mlin_provider, tiny_models_dir: Path, tmp_path: Path) -> None:
    """MODEL enum (tiny model listed via MLIN_MODELS_DIR), BANDS of a B,G,R,NIR raster, TILE_SIZE, WEIGHTS_MAP."""
    from osgeo import gdal

    data = (smooth_image(40, 32, 4, seed=2) * 255).round().astype(np.uint8)
    data[0] //= 3  # a dark blue band, so which band feeds which channel is visible in the means
    src = write_geotiff(tmp_path / "bgrn.tif", data, options=["PHOTOMETRIC=MINISBLACK"],
                        color_interp=[gdal.GCI_BlueBand, gdal.GCI_GreenBand, gdal.GCI_RedBand, gdal.GCI_Undefined])
    out, weights = tmp_path / "bands.tif", tmp_path / "weights.tif"
    params = {"INPUT": str(src), "SCALE": 1.5, "MODEL": model_index("tiny-test"), "BANDS": [3, 2, 1],
              "TILE_SIZE": 16, "WEIGHTS_MAP": str(weights), "OUTPUT": str(out)}
    result = run(params)
    assert Path(result["WEIGHTS_MAP"]) == weights
    info = raster_info(out)
    assert (info["width"], info["height"], info["bands"]) == (48, 60, 3)
    winfo = raster_info(weights)
    assert (winfo["width"], winfo["height"], winfo["bands"], winfo["dtype"]) == (48, 60, 1, "Float32")
    w = read_array(weights)
    assert np.isfinite(w).all() and (w >= 0).all() and w.max() > 0  # meta weights differ from area weights
    sr = read_array(out).astype(int)
    # tiling does not change the result
    untiled = tmp_path / "untiled.tif"
    run({**params, "TILE_SIZE": 0, "WEIGHTS_MAP": None, "OUTPUT": str(untiled)})
    assert np.abs(sr - read_array(untiled).astype(int)).max() <= 1
    # BANDS reaches the core: [1, 2, 3] feeds the blue band as red, so output band 1 follows source band 1
    run({**params, "BANDS": [1, 2, 3], "WEIGHTS_MAP": None, "OUTPUT": str(tmp_path / "swapped.tif")})
    swapped = read_array(tmp_path / "swapped.tif").astype(int)
    src_means = data.reshape(4, -1).mean(axis=1)
    assert abs(sr[0].mean() - src_means[2]) < abs(sr[0].mean() - src_means[0])
    assert abs(swapped[0].mean() - src_means[0]) < abs(swapped[0].mean() - src_means[2])


def test_cancel_from_progress_leaves_no_output(mlin_provider, tiny_model: Path, rgb40: Path, tmp_path: Path) -> None:
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    seen: list = []

    def cancel_on_first_tile(value: float) -> None:
        seen.append(value)
        if value > 0:
            feedback.cancel()

    feedback.progressChanged.connect(cancel_on_first_tile)
    out = tmp_path / "cancelled.tif"
    with pytest.raises(QgsProcessingException, match="[Cc]ancel"):
        run({"INPUT": str(rgb40), "SCALE": 2, "MODEL_FILE": str(tiny_model / "encoder.onnx"), "TILE_SIZE": 8,
             "OUTPUT": str(out)}, feedback)
    assert feedback.isCanceled() and any(v > 0 for v in seen)
    assert max(seen) < 100, "the run must stop before the last tile"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rgb40.tif"], "a cancelled run must leave nothing"


@pytest.mark.parametrize("bad, match", [
    ({"SCALE": 0.5}, "SCALE"),
    ({"SCALE": 1.0}, "SCALE"),
    ({"INPUT": "/nonexistent/raster.tif"}, "INPUT"),
    ({"DEVICE": 7}, "DEVICE"),
    ({"TILE_SIZE": -4}, "TILE_SIZE"),
])
def test_bad_parameters_give_qgis_parameter_errors(mlin_provider, tiny_model: Path, rgb40: Path, tmp_path: Path,
                                                   bad: dict, match: str) -> None:
    from qgis.core import QgsProcessingException

    params = {"INPUT": str(rgb40), "SCALE": 2, "MODEL_FILE": str(tiny_model / "encoder.onnx"),
              "OUTPUT": str(tmp_path / "o.tif"), **bad}
    with pytest.raises(QgsProcessingException, match=match):
        run(params)
    assert not (tmp_path / "o.tif").exists()


def test_scale_above_the_model_hard_limit_is_refused_before_running(mlin_provider, tiny_models_dir: Path,
                                                                   rgb40: Path, tmp_path: Path) -> None:
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match=r"hard limit ×12"):
        run({"INPUT": str(rgb40), "SCALE": 12.5, "MODEL": model_index("tiny-test"), "OUTPUT": str(tmp_path / "o.tif")})
    assert not (tmp_path / "o.tif").exists()


def test_core_errors_become_processing_exceptions(mlin_provider, tiny_model: Path, rgb40: Path, tmp_path: Path) -> None:
    """MlinError messages reach the user unchanged: band 7 of a 3-band raster, a folder that is no model."""
    from qgis.core import QgsProcessingException

    base = {"INPUT": str(rgb40), "SCALE": 2, "MODEL_FILE": str(tiny_model / "encoder.onnx"),
            "OUTPUT": str(tmp_path / "o.tif")}
    with pytest.raises(QgsProcessingException, match=r"band\(s\) \[7\] do not exist"):
        run({**base, "BANDS": [7, 2, 1]})
    not_a_model = tmp_path / "notamodel.onnx"
    not_a_model.write_bytes(b"not onnx")
    with pytest.raises(QgsProcessingException, match="must hold both encoder.onnx and decoder.onnx"):
        run({**base, "MODEL_FILE": str(not_a_model)})
    assert not (tmp_path / "o.tif").exists()


def test_output_layer_is_named_after_input_and_scale(mlin_provider, project, tiny_model: Path, rgb40: Path) -> None:
    """runAndLoadResults is what the toolbox does: the loaded layer is '<input> ×<scale> (MLIN)'."""
    import processing
    from qgis.core import QgsRasterLayer

    layer = QgsRasterLayer(str(rgb40), "Orthophoto", "gdal")
    assert layer.isValid()
    project.addMapLayer(layer)
    processing.runAndLoadResults(ALG, {"INPUT": layer, "SCALE": 2.5, "MODEL_FILE": str(tiny_model / "encoder.onnx"),
                                       "OUTPUT": "TEMPORARY_OUTPUT"})
    names = sorted(lyr.name() for lyr in project.mapLayers().values())
    assert names == ["Orthophoto", "Orthophoto ×2.5 (MLIN)"]
    out = project.mapLayersByName("Orthophoto ×2.5 (MLIN)")[0]
    assert (out.width(), out.height()) == (100, 100)
    assert out.crs().authid() == "EPSG:32633"


def test_geopackage_raster_layer_as_input(mlin_provider, tiny_model: Path, rgb40: Path, tmp_path: Path) -> None:
    """A raster table of a GeoPackage holding two: QGIS's source is a GDAL connection string, not a path."""
    from osgeo import gdal
    from qgis.core import QgsRasterLayer

    gpkg = tmp_path / "rasters.gpkg"
    for table, size in (("first", 20), ("ortho", 40)):
        ds = gdal.Translate(str(gpkg), str(rgb40), format="GPKG", width=size, height=size,
                            creationOptions=[f"RASTER_TABLE={table}", "APPEND_SUBDATASET=YES"])
        assert ds is not None
        ds = None
    layer = QgsRasterLayer(f"GPKG:{gpkg}:ortho", "ortho", "gdal")
    assert layer.isValid() and layer.width() == 40
    out = tmp_path / "gpkg_x2.tif"
    result = run({"INPUT": layer, "SCALE": 2, "MODEL_FILE": str(tiny_model / "encoder.onnx"), "OUTPUT": str(out)})
    assert (result["WIDTH"], result["HEIGHT"]) == (80, 80), "the chosen table, not the first one, was read"
    assert raster_info(out)["epsg"] == 32633


def test_ensemble_parameter_equals_the_core_ensemble(mlin_provider, tiny_model: Path, rgb40: Path, tmp_path: Path) -> None:
    from mlin_qgis.core.pipeline import SuperResolveRequest, superresolve

    out, plain = tmp_path / "ens.tif", tmp_path / "plain.tif"
    run({"INPUT": str(rgb40), "SCALE": 2.0, "MODEL_FILE": str(tiny_model / "encoder.onnx"), "ENSEMBLE": True,
         "OUTPUT": str(out)})
    run({"INPUT": str(rgb40), "SCALE": 2.0, "MODEL_FILE": str(tiny_model / "encoder.onnx"), "OUTPUT": str(plain)})
    core = tmp_path / "core.tif"
    superresolve(SuperResolveRequest(rgb40, core, 2.0, model=tiny_model, ensemble=8))
    assert np.array_equal(read_array(out), read_array(core))
    assert np.abs(read_array(out).astype(int) - read_array(plain).astype(int)).max() >= 1


def test_core_log_reaches_the_qgis_message_log_under_mlin(mlin_provider, tiny_model: Path, rgb40: Path,
                                                         tmp_path: Path) -> None:
    from qgis.core import QgsApplication

    from mlin_qgis.qgis_plugin import log as qgis_log

    qgis_log.install()
    seen: list = []

    def record(message: str, tag: str, level: Any) -> None:
        if tag == "MLIN":
            seen.append(message)

    QgsApplication.messageLog().messageReceived.connect(record)
    try:
        run({"INPUT": str(rgb40), "SCALE": 2.0, "MODEL_FILE": str(tiny_model / "encoder.onnx"),
             "OUTPUT": str(tmp_path / "o.tif")})
    finally:
        QgsApplication.messageLog().messageReceived.disconnect(record)
        qgis_log.uninstall()
    text = "\n".join(seen)
    assert "provider: CPU" in text and "tile(s) of" in text and "band 1 statistics" in text


def test_all_bands_keeps_four_uint16_bands(mlin_provider, tiny_model: Path, tmp_path: Path) -> None:
    from osgeo import gdal

    from conftest import smooth_image, write_geotiff
    from mlin_qgis.core.pipeline import SuperResolveRequest, superresolve

    data = np.round(smooth_image(30, 36, bands=4, seed=2) * 4000 + 100).astype(np.uint16)
    src = write_geotiff(tmp_path / "rgbn.tif", data)
    out = tmp_path / "all.tif"
    run({"INPUT": str(src), "SCALE": 2.0, "MODEL_FILE": str(tiny_model / "encoder.onnx"), "ALL_BANDS": True,
         "BANDS": [1, 2, 3], "OUTPUT": str(out)})
    ds = gdal.Open(str(out))
    assert ds.RasterCount == 4 and ds.GetRasterBand(4).DataType == gdal.GDT_UInt16
    assert (ds.RasterXSize, ds.RasterYSize) == (72, 60)
    core = tmp_path / "core.tif"
    superresolve(SuperResolveRequest(src, core, 2.0, model=tiny_model, all_bands=True))
    assert np.array_equal(ds.ReadAsArray(), gdal.Open(str(core)).ReadAsArray())


def test_cluster_parameter_runs_on_a_running_scheduler_with_the_same_result(mlin_provider, tiny_model: Path,
                                                                            tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed", reason="dask[distributed] is in requirements-dev.txt")
    from qgis.core import QgsProcessingException

    data = (smooth_image(90, 110, 3, seed=4) * 255).round().astype(np.uint8)
    inp = write_geotiff(tmp_path / "in.tif", data)
    here = run({"INPUT": str(inp), "SCALE": 2, "MODEL_FILE": str(tiny_model / "encoder.onnx"), "TILE_SIZE": 16,
                "OUTPUT": str(tmp_path / "here.tif")})
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as lc:
        there = run({"INPUT": str(inp), "SCALE": 2, "MODEL_FILE": str(tiny_model / "encoder.onnx"), "TILE_SIZE": 16,
                     "CLUSTER": lc.scheduler_address, "OUTPUT": str(tmp_path / "cluster.tif")})
    assert there["PROVIDER"].startswith("Dask cluster: 2 worker(s)")
    assert (there["WIDTH"], there["HEIGHT"]) == (here["WIDTH"], here["HEIGHT"]) == (220, 180)
    assert np.abs(read_array(tmp_path / "cluster.tif").astype(int) - read_array(tmp_path / "here.tif").astype(int)).max() <= 1
    assert raster_info(tmp_path / "cluster.tif")["geotransform"] == raster_info(tmp_path / "here.tif")["geotransform"]
    with pytest.raises(QgsProcessingException, match="QGIS's embedded Python"):
        run({"INPUT": str(inp), "SCALE": 2, "MODEL_FILE": str(tiny_model / "encoder.onnx"), "CLUSTER": "local:2",
             "OUTPUT": str(tmp_path / "local.tif")})
    assert not (tmp_path / "local.tif").exists()


def test_cluster_parameter_without_dask_names_the_install_command(mlin_provider, tiny_model: Path, rgb40: Path,
                                                                  tmp_path: Path, monkeypatch) -> None:
    import sys

    from qgis.core import QgsProcessingException

    monkeypatch.setitem(sys.modules, "distributed", None)  # how Python marks a module as not importable
    with pytest.raises(QgsProcessingException, match=r"pip install .*dask\[distributed\]"):
        run({"INPUT": str(rgb40), "SCALE": 2, "MODEL_FILE": str(tiny_model / "encoder.onnx"),
             "CLUSTER": "tcp://127.0.0.1:8786", "OUTPUT": str(tmp_path / "out.tif")})
    # without CLUSTER the same run works as before
    assert Path(run({"INPUT": str(rgb40), "SCALE": 2, "MODEL_FILE": str(tiny_model / "encoder.onnx"),
                     "OUTPUT": str(tmp_path / "out.tif")})["OUTPUT"]).exists()


def test_precision_int8_runs_the_quantised_decoder_and_refuses_without_one(mlin_provider, rgb40: Path,
                                                                         tiny_model: Path, tmp_path: Path) -> None:
    from qgis.core import QgsProcessingException

    shipped = Path(__file__).resolve().parents[1] / "models" / "mlin-edsr-ucmerced"
    fp32 = run({"INPUT": str(rgb40), "SCALE": 2, "MODEL_FILE": str(shipped / "encoder.onnx"),
                "OUTPUT": str(tmp_path / "fp32.tif")})
    int8 = run({"INPUT": str(rgb40), "SCALE": 2, "MODEL_FILE": str(shipped / "encoder.onnx"), "PRECISION": 1,
                "OUTPUT": str(tmp_path / "int8.tif")})
    a, b = read_array(Path(fp32["OUTPUT"])).astype(int), read_array(Path(int8["OUTPUT"])).astype(int)
    assert 0 < np.abs(a - b).max() <= 3, "the int8 decoder ran (not bit-identical) and stays close"
    with pytest.raises(QgsProcessingException, match="no int8 decoder"):
        run({"INPUT": str(rgb40), "SCALE": 2, "MODEL_FILE": str(tiny_model / "encoder.onnx"), "PRECISION": 1,
             "OUTPUT": str(tmp_path / "tiny.tif")})
