"""The zoom dialog with real widgets, a real QgsProject, real QgsTasks and the tiny real ONNX model.

Saves a screenshot to test-artifacts/zoom_dialog.png. ``CanvasIface`` (last tests) is a stand-in for
QGIS's main-window interface, which does not exist headless: it only hands out a real QgsMapCanvas
and an active layer, the two things the dialog asks iface for.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from conftest import UTM33N_GT, smooth_image, write_geotiff

pytest_plugins = ["qgis_fixtures"]

REPO = Path(__file__).resolve().parents[1]


def wait_until(condition: Any, timeout: float = 120.0) -> bool:
    from qgis_fixtures import wait_until as wait

    return wait(condition, timeout)


@pytest.fixture
def layer(project: Any, tmp_path: Path) -> Any:
    from qgis.core import QgsRasterLayer

    data = (smooth_image(40, 40, 3, seed=4) * 255).round().astype(np.uint8)
    path = write_geotiff(tmp_path / "field.tif", data)
    layer = QgsRasterLayer(str(path), "Field", "gdal")
    assert layer.isValid()
    project.addMapLayer(layer)
    return layer


@pytest.fixture
def dialog(qgis_app: Any, tiny_models_dir: Path, layer: Any) -> Iterator[Any]:
    from mlin_qgis.qgis_plugin.gui.zoom_dialog import ZoomDialog

    dlg = ZoomDialog(iface=None)
    index = dlg.model_combo.findText("tiny-test")
    assert index >= 0, "the tiny model must be listed"
    dlg.model_combo.setCurrentIndex(index)
    dlg.layer_combo.setLayer(layer)
    dlg.show()
    dlg.update_estimate()  # the first estimate of a model calibrates in a task: let it end
    assert wait_until(lambda: dlg.estimate_label.task is None, 120), "the first estimate did not finish"
    yield dlg
    dlg.shutdown()
    wait_until(lambda: dlg.task is None and dlg.preview.task is None, 30)
    dlg.close()
    dlg.deleteLater()


def test_slider_and_spin_box_stay_in_sync_and_follow_the_model(dialog: Any) -> None:
    dialog.spin.setValue(3.3)
    assert dialog.slider.value() == 33
    dialog.slider.setValue(47)
    assert dialog.spin.value() == pytest.approx(4.7) and dialog.scale() == pytest.approx(4.7)
    # range: x1.1 to the tiny model's hard limit x12, in 0.1 steps (slider ints = scale * 10)
    assert (dialog.spin.minimum(), dialog.spin.maximum()) == (pytest.approx(1.1), pytest.approx(12.0))
    assert (dialog.slider.minimum(), dialog.slider.maximum()) == (11, 120)
    dialog.spin.setValue(50)
    assert dialog.spin.value() == pytest.approx(12.0) and dialog.slider.value() == 120
    shipped = dialog.model_combo.findText("liif-edsr-div2k")
    if shipped >= 0:  # the shipped model allows up to its own hard limit
        dialog.model_combo.setCurrentIndex(shipped)
        hard = dialog.current_card().hard_max_scale
        assert dialog.spin.maximum() == pytest.approx(hard) and dialog.slider.maximum() == round(hard * 10)
        assert dialog.spin.value() == pytest.approx(12.0), "changing model keeps a zoom that is still allowed"


def test_estimate_label_shows_output_size_file_size_and_time(dialog: Any, layer: Any) -> None:
    from mlin_qgis.core import pipeline
    from mlin_qgis.qgis_plugin.gui.estimate import human_bytes, human_seconds

    dialog.set_scale(2.5)
    dialog.update_estimate()
    est = pipeline.estimate(layer.source(), 2.5, dialog.model_path())
    text = dialog.estimate_label.text()
    assert text.startswith("Output 100 × 100 px · about ")
    assert human_bytes(est.bytes) in text and human_seconds(est.seconds) in text
    assert "recommended" not in text
    dialog.set_scale(7.5)  # above the tiny model's recommended x6
    assert wait_until(lambda: "300 × 300 px" in dialog.estimate_label.text(), 5), "the label follows the zoom"
    assert "recommended for tiny-test" in dialog.estimate_label.text()
    assert dialog.run_button.isEnabled()


def test_preview_shows_sr_next_to_bicubic_and_run_adds_a_layer(dialog: Any, project: Any, tmp_path: Path) -> None:
    from qgis_fixtures import ARTIFACTS, raster_info

    dialog.set_scale(4.0)
    task = dialog.start_preview()
    assert task is not None
    assert wait_until(lambda: dialog.preview.task is None), "the preview task did not finish"
    bicubic, mlin = dialog.preview.images
    assert bicubic is not None and mlin is not None, dialog.preview.info.text()
    assert (mlin.width(), mlin.height()) == (128, 128) and (bicubic.width(), bicubic.height()) == (128, 128)
    panes = dialog.preview
    assert panes.sr_pane.pixmap().width() == panes.bicubic_pane.pixmap().width() == 256, "both shown 2x"
    assert not dialog.preview.sr_pane.pixmap().isNull() and not dialog.preview.bicubic_pane.pixmap().isNull()

    def grey(image: Any) -> np.ndarray:
        return np.array([[image.pixelColor(x, y).value() for x in range(0, 128, 4)] for y in range(0, 128, 4)], float)

    g_sr, g_bic = grey(mlin), grey(bicubic)
    assert g_sr.std() > 5, "the SR preview must show the image, not a blank"
    assert np.abs(g_sr - g_bic).mean() < 25, "SR and bicubic show the same place"
    assert np.abs(g_sr - g_bic).mean() > 1.0, "SR is not just the bicubic image"
    assert dialog.preview.folder is not None and not list(project.mapLayers().values())[1:], "a preview adds no layer"

    out = tmp_path / "dialog_out.tif"
    dialog.output_widget.setFilePath(str(out))
    dialog.set_scale(2.5)
    assert dialog.start_run() is not None
    assert dialog.cancel_button.text() == "Cancel"
    assert wait_until(lambda: dialog.task is None), "the run task did not finish"
    assert dialog.status_label.text().startswith("Done: 100 × 100 px"), dialog.status_label.text()
    assert dialog.progress.value() == 100 and dialog.cancel_button.text() == "Close"
    added = project.mapLayersByName("Field ×2.5 (MLIN)")
    assert len(added) == 1 and added[0].isValid() and added[0].source() == str(out)
    info = raster_info(out)
    assert (info["width"], info["height"], info["epsg"]) == (100, 100, 32633)
    assert info["geotransform"][1] == pytest.approx(UTM33N_GT[1] / 2.5)

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "zoom_dialog.png"
    assert dialog.grab().save(str(shot))
    assert shot.stat().st_size > 5000


def test_empty_output_path_writes_a_temporary_file(dialog: Any, project: Any) -> None:
    dialog.set_scale(1.5)
    dialog.output_widget.setFilePath("")
    dialog.start_run()
    assert wait_until(lambda: dialog.task is None)
    added = project.mapLayersByName("Field ×1.5 (MLIN)")
    assert len(added) == 1 and Path(added[0].source()).is_file()
    assert (added[0].width(), added[0].height()) == (60, 60)


def test_cancel_during_the_run_leaves_no_output_and_no_layer(dialog: Any, project: Any, tmp_path: Path) -> None:
    from qgis.PyQt.QtCore import Qt

    out = tmp_path / "cancelled.tif"
    dialog.output_widget.setFilePath(str(out))
    dialog.set_scale(3.0)
    task = dialog.start_run()
    # The first progress message is sent from the worker thread before the first tile; cancelling
    # right there (direct connection) makes the cancel deterministic.
    task.message.connect(lambda _text: task.cancel(), Qt.DirectConnection)
    assert wait_until(lambda: dialog.task is None)
    assert dialog.status_label.text() == "Cancelled; no output was written."
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.suffix == ".tif" and p.name != "field.tif"]
    assert project.mapLayersByName("Field ×3 (MLIN)") == []


class CanvasIface:
    """Stand-in for QGIS's iface (no main window headless): a real QgsMapCanvas and an active layer."""

    def __init__(self, canvas: Any, active: Any) -> None:
        self.canvas, self.active = canvas, active

    def mapCanvas(self) -> Any:  # noqa: N802 - iface API
        return self.canvas

    def activeLayer(self) -> Any:  # noqa: N802 - iface API
        return self.active


def test_defaults_to_active_layer_and_previews_at_the_canvas_centre(qgis_app: Any, tiny_models_dir: Path,
                                                                   project: Any, layer: Any, tmp_path: Path) -> None:
    from qgis.core import QgsCoordinateReferenceSystem, QgsRasterLayer, QgsRectangle
    from qgis.gui import QgsMapCanvas

    from mlin_qgis.qgis_plugin.gui.preview import preview_window
    from mlin_qgis.qgis_plugin.gui.zoom_dialog import ZoomDialog

    other = QgsRasterLayer(str(write_geotiff(tmp_path / "other.tif", np.zeros((3, 8, 8), np.uint8))), "Other", "gdal")
    project.addMapLayer(other)
    canvas = QgsMapCanvas()
    canvas.resize(200, 200)
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:32633"))
    x0, y0 = UTM33N_GT[0], UTM33N_GT[3]
    # canvas centred on LR pixel (col 10, row 30) of the 40x40, 0.5 m raster
    cx, cy = x0 + 10 * 0.5, y0 - 30 * 0.5
    canvas.setExtent(QgsRectangle(cx - 2, cy - 2, cx + 2, cy + 2))
    dlg = ZoomDialog(iface=CanvasIface(canvas, layer))
    try:
        assert dlg.layer() is layer, "the dialog starts on the active layer"
        col, row = dlg.preview.centre(layer)
        assert (col, row) == (pytest.approx(10, abs=0.01), pytest.approx(30, abs=0.01))
        assert preview_window(40, 40, (col, row), 8.0) == (2, 22, 16, 16)
        canvas.setExtent(QgsRectangle(cx + 1000, cy, cx + 1004, cy + 4))  # centre outside: raster centre
        assert dlg.preview.centre(layer) == (20.0, 20.0)
    finally:
        dlg.shutdown()
        dlg.deleteLater()


def test_best_quality_box_asks_for_the_ensemble_and_counts_its_passes(dialog: Any) -> None:
    dialog.spin.setValue(2.0)
    assert dialog.make_request("in.tif", "out.tif").ensemble == 1
    one = dialog.estimate_label.text()
    dialog.ensemble_check.setChecked(True)
    assert dialog.make_request("in.tif", "out.tif").ensemble == 8
    assert "(8 passes)" in dialog.estimate_label.text() and "(8 passes)" not in one


def test_default_output_is_a_new_file_next_to_the_input(dialog: Any, layer: Any, tmp_path: Path) -> None:
    from mlin_qgis.qgis_plugin.gui.zoom_dialog import unique_path

    dialog.spin.setValue(2.5)
    dialog.output_widget.setFilePath("")
    src = Path(layer.source())
    first = Path(dialog.output_path("Field", str(src)))
    assert first == src.parent / "Field_x2.5_mlin.tif"
    first.write_bytes(b"taken")
    assert Path(dialog.output_path("Field", str(src))) == src.parent / "Field_x2.5_mlin_2.tif"
    assert unique_path(tmp_path, "a", ".tif") == tmp_path / "a.tif"


def test_an_old_message_goes_when_the_settings_change(dialog: Any) -> None:
    dialog.status_label.setText("Failed: an old error")
    dialog.spin.setValue(3.1)
    assert dialog.status_label.text() == ""


def test_every_band_box_asks_for_all_bands(dialog: Any) -> None:
    assert dialog.make_request("in.tif", "out.tif").all_bands is False
    dialog.all_bands_check.setChecked(True)
    assert dialog.make_request("in.tif", "out.tif").all_bands is True


def _canvas_dialog(layer: Any, extent: Any) -> tuple:
    from qgis.core import QgsCoordinateReferenceSystem
    from qgis.gui import QgsMapCanvas

    from mlin_qgis.qgis_plugin.gui.zoom_dialog import ZoomDialog

    canvas = QgsMapCanvas()
    canvas.resize(200, 200)
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:32633"))
    canvas.setExtent(extent)
    dlg = ZoomDialog(iface=CanvasIface(canvas, layer))
    dlg.model_combo.setCurrentIndex(dlg.model_combo.findText("tiny-test"))
    return dlg, canvas


def test_area_from_the_map_view_and_from_a_drawn_rectangle(qgis_app: Any, tiny_models_dir: Path, project: Any,
                                                           layer: Any, tmp_path: Path) -> None:
    from qgis.core import QgsRectangle
    from qgis.gui import QgsMapToolExtent

    from mlin_qgis.core.pipeline import SuperResolveRequest, superresolve

    x0, y0 = UTM33N_GT[0], UTM33N_GT[3]
    view = QgsRectangle(x0 + 3.1, y0 - 12.2, x0 + 9.3, y0 - 4.4)
    dlg, canvas = _canvas_dialog(layer, view)
    try:
        assert [dlg.area_picker.combo.itemText(i) for i in range(3)] == ["Whole layer", "Current map view",
                                                                   "Rectangle drawn on the map"]
        assert dlg.area_picker.area(layer) is None and not dlg.area_picker.draw_button.isVisible()
        dlg.area_picker.combo.setCurrentIndex(dlg.area_picker.combo.findData("view"))
        got = dlg.area_picker.area(layer)
        assert got is not None and got == canvas.extent()  # the canvas may widen the view to its aspect
        dlg.update_estimate()
        assert wait_until(lambda: dlg.estimate_label.task is None, 120), "the first estimate did not finish"
        whole_text = "Output 100 × 100 px"
        assert "Output" in dlg.estimate_label.text(), dlg.estimate_label.text()
        assert whole_text not in dlg.estimate_label.text(), "the estimate is the area's, not the layer's"
        out = tmp_path / "view.tif"
        dlg.output_widget.setFilePath(str(out))
        dlg.set_scale(2.5)
        assert dlg.start_run() is not None
        assert wait_until(lambda: dlg.task is None), "the run task did not finish"
        assert out.exists(), dlg.status_label.text()
        area = canvas.extent()
        core = superresolve(SuperResolveRequest(layer.source(), tmp_path / "core.tif", 2.5, model=dlg.model_path(),
                                                extent=(area.xMinimum(), area.yMinimum(), area.xMaximum(),
                                                        area.yMaximum())))
        from osgeo import gdal

        a, b = gdal.Open(str(out)), gdal.Open(str(core.output_path))
        assert a.GetGeoTransform() == b.GetGeoTransform() and a.RasterXSize < 100
        assert np.array_equal(a.ReadAsArray(), b.ReadAsArray())

        # a rectangle dragged on the canvas with QGIS's extent tool (its signal is what a drag emits)
        dlg.area_picker.combo.setCurrentIndex(dlg.area_picker.combo.findData("drawn"))
        assert not dlg.area_picker.draw_button.isHidden()
        dlg.area_picker.start_drawing()
        assert isinstance(canvas.mapTool(), QgsMapToolExtent)
        drawn = QgsRectangle(x0 + 1, y0 - 6, x0 + 5, y0 - 2)
        canvas.mapTool().extentChanged.emit(drawn)
        assert dlg.area_picker.area(layer) == drawn and canvas.mapTool() is None, \
            "the tool is released after the drag"
    finally:
        dlg.shutdown()
        dlg.deleteLater()


def test_a_layer_that_is_not_a_file_runs_through_the_dialog(qgis_app: Any, tiny_models_dir: Path, project: Any,
                                                            layer: Any, tmp_path: Path) -> None:
    from qgis.core import QgsRasterDataProvider, QgsRasterLayer

    params = QgsRasterDataProvider.VirtualRasterParameters()
    params.crs, params.extent, params.width, params.height = layer.crs(), layer.extent(), layer.width(), layer.height()
    params.formula = '"f@2" * 1.0'
    entry = QgsRasterDataProvider.VirtualRasterInputLayers()
    entry.name, entry.uri, entry.provider = "f", layer.source(), "gdal"
    params.rInputLayers = [entry]
    virtual = QgsRasterLayer(QgsRasterDataProvider.encodeVirtualRasterProviderUri(params), "Virtual", "virtualraster")
    assert virtual.isValid()
    project.addMapLayer(virtual)
    import tempfile

    from mlin_qgis.qgis_plugin.gui.zoom_dialog import ZoomDialog

    before = set(Path(tempfile.gettempdir()).glob("mlin-layer-*"))
    dlg = ZoomDialog(iface=None)
    try:
        dlg.model_combo.setCurrentIndex(dlg.model_combo.findText("tiny-test"))
        dlg.layer_combo.setLayer(virtual)
        dlg.update_estimate()
        assert "read through QGIS" in dlg.estimate_label.text() and dlg.run_button.isEnabled()
        out = tmp_path / "virtual.tif"
        dlg.output_widget.setFilePath(str(out))
        dlg.set_scale(2.0)
        assert dlg.start_run() is not None
        assert wait_until(lambda: dlg.task is None), "the run task did not finish"
        assert dlg.status_label.text().startswith("Done: 80 × 80 px"), dlg.status_label.text()
        added = project.mapLayersByName("Virtual ×2 (MLIN)")
        assert len(added) == 1 and added[0].isValid() and added[0].bandCount() == 1
        assert set(Path(tempfile.gettempdir()).glob("mlin-layer-*")) == before, "the temporary copy is removed"
    finally:
        dlg.shutdown()
        dlg.deleteLater()


def test_cuda_is_greyed_out_where_onnxruntime_cannot_run_it(dialog: Any) -> None:
    from mlin_qgis.core.engine import cuda_offered

    item = dialog.device_combo.model().item(dialog.device_combo.findText("cuda"))
    assert item.isEnabled() == cuda_offered()
    if not cuda_offered():
        assert "onnxruntime-gpu" in item.toolTip()


def test_a_preview_goes_stale_when_the_zoom_or_layer_changes(dialog: Any, project: Any, tmp_path: Path) -> None:
    from qgis.core import QgsRasterLayer

    dialog.set_scale(3.0)
    assert dialog.start_preview() is not None
    assert wait_until(lambda: dialog.preview.task is None), "the preview task did not finish"
    assert dialog.preview.images[1] is not None and not dialog.preview.sr_pane.pixmap().isNull()
    dialog.all_bands_check.setChecked(False)  # no change: the preview stays
    assert dialog.preview.images[1] is not None
    dialog.set_scale(3.5)
    assert dialog.preview.images == (None, None) and dialog.preview.sr_pane.pixmap().isNull()
    assert "out of date" in dialog.preview.info.text()
    # a preview whose settings change while it runs is not shown
    assert dialog.start_preview() is not None
    other = QgsRasterLayer(str(write_geotiff(tmp_path / "other.tif", np.full((3, 12, 12), 90, np.uint8))), "O", "gdal")
    project.addMapLayer(other)
    dialog.layer_combo.setLayer(other)
    assert wait_until(lambda: dialog.preview.task is None), "the preview task did not finish"
    assert dialog.preview.images == (None, None) and "out of date" in dialog.preview.info.text()


def test_preview_panes_stay_inside_the_dialog_with_the_longest_messages(dialog: Any) -> None:
    from qgis.PyQt.QtCore import QPoint, QRect
    from qgis.PyQt.QtWidgets import QApplication

    from mlin_qgis.qgis_plugin import dependencies

    dialog.set_scale(11.5)  # above every model's recommended zoom: the longest estimate with its warning
    dialog.update_estimate()
    dialog.status_label.setText(dependencies.onnxruntime_install_text() * 2)
    dialog.preview.clear("The preview is out of date: press Preview to see the new settings.")  # its longest text
    dialog.resize(dialog.minimumWidth(), 200)  # as small as the user can make it
    for _ in range(5):
        QApplication.processEvents()
    inside = dialog.rect()
    for pane in (dialog.preview.bicubic_pane, dialog.preview.sr_pane, dialog.run_button, dialog.cancel_button):
        top_left = pane.mapTo(dialog, QPoint(0, 0))
        assert inside.contains(QRect(top_left, pane.size())), f"{pane.objectName() or pane} leaves the dialog"
    assert dialog.preview.bicubic_pane.width() == dialog.preview.sr_pane.width() >= 160
    assert dialog.height() <= 820, "long texts scroll; the dialog stays within a laptop screen"
    assert dialog.status_area.verticalScrollBar().maximum() > 0, "the long status text scrolls"


def test_screenshots_script_makes_both_images_in_a_real_headless_qgis(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    out = tmp_path / "shots"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "screenshots.py"), str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    assert done.returncode == 0, done.stdout + done.stderr
    from qgis.PyQt.QtGui import QImage

    for name, min_size in (("zoom_dialog.png", (400, 500)), ("result_over_input.png", (900, 300))):
        image = QImage(str(out / name))
        assert not image.isNull() and image.width() >= min_size[0] and image.height() >= min_size[1], name
    assert "Done:" in done.stdout


def test_the_preview_spot_is_picked_by_clicking_the_map(qgis_app: Any, tiny_models_dir: Path, project: Any,
                                                        layer: Any) -> None:
    from qgis.core import QgsPointXY, QgsRectangle
    from qgis.gui import QgsMapToolEmitPoint
    from qgis.PyQt.QtCore import Qt

    x0, y0 = UTM33N_GT[0], UTM33N_GT[3]
    dlg, canvas = _canvas_dialog(layer, QgsRectangle(x0, y0 - 20, x0 + 20, y0))
    try:
        dlg.preview.start_picking()
        assert isinstance(canvas.mapTool(), QgsMapToolEmitPoint)
        canvas.mapTool().canvasClicked.emit(QgsPointXY(x0 + 5 * 0.5, y0 - 33 * 0.5), Qt.LeftButton)  # what a click emits
        assert canvas.mapTool() is None, "the tool is released after the click"
        col, row = dlg.preview.centre(layer)
        assert (col, row) == (pytest.approx(5, abs=0.01), pytest.approx(33, abs=0.01))
        assert dlg.preview.task is not None, "the click starts a preview there"
        assert wait_until(lambda: dlg.preview.task is None), "the preview task did not finish"
        assert dlg.preview.images[1] is not None
    finally:
        dlg.shutdown()
        dlg.deleteLater()


def test_the_preview_is_that_window_of_the_run_with_the_default_model(qgis_app: Any, project: Any,
                                                                      tmp_path: Path) -> None:
    """The default (`auto`, degradation-aware) preview reads the raster's code from the whole raster and
    the halo from outside its window: its pixels are the run's pixels there (issue 30)."""
    from osgeo import gdal
    from qgis.core import QgsRasterLayer

    from mlin_qgis.core.pipeline import SuperResolveRequest, superresolve
    from mlin_qgis.qgis_plugin.gui.zoom_dialog import ZoomDialog

    data = (smooth_image(60, 70, 3, seed=6) * 255).round().astype(np.uint8)
    path = write_geotiff(tmp_path / "scene.tif", data)
    layer = QgsRasterLayer(str(path), "Scene", "gdal")
    project.addMapLayer(layer)
    dlg = ZoomDialog(iface=None)
    try:
        dlg.model_combo.setCurrentIndex(dlg.model_combo.findText("auto"))
        dlg.layer_combo.setLayer(layer)
        dlg.set_scale(3.0)
        assert dlg.start_preview() is not None
        assert wait_until(lambda: dlg.preview.task is None), "the preview task did not finish"
        preview = gdal.Open(str(dlg.preview.folder / "preview_sr.tif"))
        whole = superresolve(SuperResolveRequest(path, tmp_path / "whole.tif", 3.0)).output_path
        run = gdal.Open(str(whole))
        gp, gw = preview.GetGeoTransform(), run.GetGeoTransform()
        c0, r0 = round((gp[0] - gw[0]) / gw[1]), round((gp[3] - gw[3]) / gw[5])
        cut = run.ReadAsArray()[:, r0:r0 + preview.RasterYSize, c0:c0 + preview.RasterXSize].astype(int)
        assert preview.RasterXSize < run.RasterXSize and cut.shape == preview.ReadAsArray().shape
        assert np.abs(preview.ReadAsArray().astype(int) - cut).max() <= 1
        assert preview.GetMetadata()["MLIN_INPUT_CODE"] == run.GetMetadata()["MLIN_INPUT_CODE"]
    finally:
        dlg.shutdown()
        wait_until(lambda: dlg.task is None and dlg.preview.task is None, 30)
        dlg.deleteLater()
