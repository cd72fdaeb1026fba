"""Errors at the QGIS entry points, in real headless QGIS: the Processing algorithm and the zoom dialog
each turn an exception into what the user sees in ONE function (processing/errors.py, gui/errors.py):
a MlinError keeps its one-line message, a bug becomes one line that points at the logged traceback."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import smooth_image, write_geotiff

pytest_plugins = ["qgis_fixtures"]


@pytest.fixture
def rgb40(tmp_path: Path) -> Path:
    return write_geotiff(tmp_path / "rgb40.tif", (smooth_image(40, 40, 3, seed=2) * 255).round().astype(np.uint8))


def process(params: dict) -> dict:
    """``processAlgorithm`` of mlin:superresolve itself (Processing's parameter checks would catch some of
    these before the algorithm runs; here the algorithm's own handling is what is tested)."""
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback

    alg = QgsApplication.processingRegistry().createAlgorithmById("mlin:superresolve")
    assert alg is not None
    return alg.processAlgorithm(params, QgsProcessingContext(), QgsProcessingFeedback())


def one_line(message: str) -> str:
    assert "\n" not in message and "Traceback" not in message, message
    return message


@pytest.mark.qgis
@pytest.mark.parametrize("bad, match", [
    ({"OUTPUT": "/nonexistent-folder/deeper/o.tif"}, "nonexistent-folder"),
    ({"SCALE": 1e9}, "1e\\+09|1000000000"),
    ({"MODEL_FILE": "/nonexistent-model/encoder.onnx"}, "nonexistent-model"),
])
def test_processing_turns_a_bad_input_into_its_one_line_message(mlin_provider, tiny_model: Path, rgb40: Path,
                                                                 tmp_path: Path, bad: dict, match: str) -> None:
    from qgis.core import QgsProcessingException

    params = {"INPUT": str(rgb40), "SCALE": 2.0, "MODEL_FILE": str(tiny_model / "encoder.onnx"),
              "OUTPUT": str(tmp_path / "o.tif"), **bad}
    with pytest.raises(QgsProcessingException, match=match) as caught:
        process(params)
    message = one_line(str(caught.value))
    assert not message.startswith("Unexpected"), message
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.qgis
def test_processing_run_gives_the_same_line(mlin_provider, tiny_model: Path, rgb40: Path, tmp_path: Path) -> None:
    """Through processing.run as a user's script would: the MlinError's message, nothing more."""
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="must hold both encoder.onnx and decoder.onnx") as caught:
        bad = tmp_path / "notamodel.onnx"
        bad.write_bytes(b"not onnx")
        processing.run("mlin:superresolve", {"INPUT": str(rgb40), "SCALE": 2, "MODEL_FILE": str(bad),
                                             "OUTPUT": str(tmp_path / "o.tif")})
    one_line(str(caught.value))


@pytest.mark.qgis
def test_processing_turns_a_bug_into_one_line_and_a_log(mlin_provider, tiny_model: Path, rgb40: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from qgis.core import QgsProcessingException

    from mlin_qgis.core import pipeline

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ZeroDivisionError("a planted bug")

    monkeypatch.setattr(pipeline, "superresolve", broken)
    monkeypatch.setenv("MLIN_LOG_DIR", str(tmp_path / "logs"))
    with pytest.raises(QgsProcessingException) as caught:
        process({"INPUT": str(rgb40), "SCALE": 2.0, "MODEL_FILE": str(tiny_model / "encoder.onnx"),
                 "OUTPUT": str(tmp_path / "o.tif")})
    message = one_line(str(caught.value))
    assert message.startswith("Unexpected error (ZeroDivisionError: a planted bug)"), message
    assert "MLIN tab" in message and "please report it" in message
    logs = list((tmp_path / "logs").glob("mlin-qgis-Processing-algorithm-*.log"))
    assert len(logs) == 1 and str(logs[0]) in message
    assert "ZeroDivisionError: a planted bug" in logs[0].read_text() and "Traceback" in logs[0].read_text()


@pytest.mark.qgis
def test_processing_handler_maps_each_kind(qgis_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from qgis.core import QgsProcessingException

    from mlin_qgis.core.errors import ConfigError, MlinCancelled, RasterError
    from mlin_qgis.qgis_plugin.processing.errors import processing_exception

    monkeypatch.setenv("MLIN_LOG_DIR", str(tmp_path))
    assert str(processing_exception(RasterError("in.tif cannot be read."))) == "in.tif cannot be read."
    assert str(processing_exception(ConfigError("bad option."))) == "bad option."
    assert str(processing_exception(MlinCancelled("cancelled by the user; the partial output was removed."))) == \
        "Cancelled by the user; the partial output was removed."
    same = QgsProcessingException("already mapped")
    assert processing_exception(same) is same
    assert str(processing_exception(KeyError("x"))).startswith("Unexpected error (KeyError: 'x')")


@pytest.mark.qgis
def test_the_dialog_handler_shows_the_line_for_each_error(qgis_app: Any, tiny_models_dir: Path, project: Any,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlin_qgis.core.errors import CheckpointError, MlinCancelled, ModelCardError, RasterError
    from mlin_qgis.qgis_plugin.gui.errors import CANCELLED_TEXT
    from mlin_qgis.qgis_plugin.gui.zoom_dialog import ZoomDialog

    monkeypatch.setenv("MLIN_LOG_DIR", str(tmp_path / "logs"))
    dlg = ZoomDialog(iface=None)
    try:
        for exc in (RasterError("x.tif cannot be read; check the path."), ModelCardError("the card is invalid."),
                    CheckpointError("the checkpoint is missing.")):
            assert dlg.show_error(exc) == str(exc) and dlg.status_label.text() == str(exc)
        assert dlg.show_error(MlinCancelled("cancelled while reading the layer.")) == CANCELLED_TEXT
        text = one_line(dlg.show_error(TypeError("a planted bug")))
        assert text.startswith("Unexpected error (TypeError: a planted bug)") and "MLIN tab" in text
        assert dlg.status_label.text() == text
        assert len(list((tmp_path / "logs").glob("mlin-qgis-zoom-dialog-*.log"))) == 1
    finally:
        dlg.shutdown()
        dlg.deleteLater()


@pytest.mark.qgis
def test_a_bug_in_the_dialogs_run_shows_one_line(qgis_app: Any, tiny_models_dir: Path, project: Any, rgb40: Path,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's task (worker thread) reports through the same handler: one line on the status label."""
    from qgis.core import QgsRasterLayer

    from mlin_qgis.core import pipeline
    from mlin_qgis.qgis_plugin.gui.zoom_dialog import ZoomDialog
    from qgis_fixtures import wait_until

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a planted bug")

    monkeypatch.setattr(pipeline, "superresolve", broken)
    monkeypatch.setenv("MLIN_LOG_DIR", str(tmp_path / "logs"))
    layer = QgsRasterLayer(str(rgb40), "Field", "gdal")
    project.addMapLayer(layer)
    dlg = ZoomDialog(iface=None)
    try:
        dlg.model_combo.setCurrentIndex(dlg.model_combo.findText("tiny-test"))
        dlg.layer_combo.setLayer(layer)
        dlg.output_widget.setFilePath(str(tmp_path / "o.tif"))
        assert dlg.start_run() is not None
        assert wait_until(lambda: dlg.task is None, 60), "the run task did not finish"
        text = one_line(dlg.status_label.text())
        assert text.startswith("Unexpected error (RuntimeError: a planted bug)"), text
        assert not (tmp_path / "o.tif").exists()
    finally:
        dlg.shutdown()
        wait_until(lambda: dlg.estimate_label.task is None, 60)
        dlg.deleteLater()
