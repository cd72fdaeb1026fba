"""Remake the README's screenshots in a real QGIS (`make screenshots`; `python scripts/screenshots.py [FOLDER]`).

Runs QGIS headless (Qt's offscreen platform, or the X display of `xvfb-run` when it wraps this script),
loads the demo raster into a real project and map canvas, opens the plugin's zoom dialog on it, runs its
preview and its full run (the real QgsTasks and the shipped default model), and saves:
  docs/screenshots/zoom_dialog.png        the dialog after the preview, as a user sees it
  docs/screenshots/result_over_input.png  input (bicubic-drawn) | result, the same map extent
Nothing here is mocked except QGIS's main-window interface, which a headless QGIS does not have: a
stand-in hands the dialog the real map canvas and the active layer.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen" if not os.environ.get("DISPLAY") else "xcb")
REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "screenshots"
SCALE = 4.0


class CanvasIface:
    def __init__(self, canvas, layer) -> None:
        self.canvas, self.layer = canvas, layer

    def mapCanvas(self):  # noqa: N802 - iface API
        return self.canvas

    def activeLayer(self):  # noqa: N802 - iface API
        return self.layer


def wait(condition, app, timeout: float = 600.0) -> None:
    end = time.time() + timeout
    while not condition():
        if time.time() > end:
            raise SystemExit("screenshots: a task did not finish in time")
        app.processEvents()
        time.sleep(0.05)


def main(argv: list[str]) -> int:
    global OUT
    if argv:
        OUT = Path(argv[0])  # another folder (the test writes to a temporary one)
    from qgis.core import QgsApplication, QgsCubicRasterResampler, QgsProject, QgsRasterLayer, QgsRectangle
    from qgis.gui import QgsMapCanvas
    from qgis.PyQt.QtCore import QSize, Qt
    from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter

    profile = tempfile.mkdtemp(prefix="mlin-shots-")
    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], True, profile)
    app.initQgis()
    from mlin_qgis.qgis_plugin.gui.preview import render_layer
    from mlin_qgis.qgis_plugin.gui.zoom_dialog import ZoomDialog

    OUT.mkdir(parents=True, exist_ok=True)
    project = QgsProject.instance()
    layer = QgsRasterLayer(str(REPO / "resources" / "OSBS_029.tif"), "OSBS_029", "gdal")
    assert layer.isValid(), "resources/OSBS_029.tif must load"
    project.addMapLayer(layer)
    canvas = QgsMapCanvas()
    canvas.resize(400, 400)
    canvas.setDestinationCrs(layer.crs())
    canvas.setLayers([layer])
    e = layer.extent()
    view = QgsRectangle(e.xMinimum() + 0.3 * e.width(), e.yMinimum() + 0.3 * e.height(),
                        e.xMinimum() + 0.55 * e.width(), e.yMinimum() + 0.55 * e.height())
    canvas.setExtent(view)
    dialog = ZoomDialog(iface=CanvasIface(canvas, layer), project=project)
    dialog.area_picker.combo.setCurrentIndex(dialog.area_picker.combo.findData("view"))
    dialog.set_scale(SCALE)
    with tempfile.TemporaryDirectory() as tmp:
        dialog.output_widget.setFilePath(str(Path(tmp) / "osbs_x4.tif"))
        dialog.show()
        dialog.update_estimate()
        wait(lambda d=dialog: d.estimate_label.task is None, app)  # the first estimate measures the speed
        dialog.start_preview()
        wait(lambda d=dialog: d.preview.task is None, app)
        dialog.start_run()
        wait(lambda d=dialog: d.task is None, app)
        app.processEvents()
        dialog.grab().save(str(OUT / "zoom_dialog.png"))
        print(f"screenshots: {OUT / 'zoom_dialog.png'} ({dialog.status_label.text()})")
        result = QgsRasterLayer(str(Path(tmp) / "osbs_x4.tif"), "result", "gdal")
        assert result.isValid(), dialog.status_label.text()
        side = 480
        size = QSize(side, int(round(side * result.height() / result.width())))  # the result's aspect
        source = layer.clone()
        source.resampleFilter().setZoomedInResampler(QgsCubicRasterResampler())
        source_view = _render(source, result.extent(), size)
        result_view = render_layer(result, size)
        del result
        canvas_img = QImage(2 * side + 12, size.height() + 34, QImage.Format_RGB32)
        canvas_img.fill(QColor(255, 255, 255))
        painter = QPainter(canvas_img)
        painter.drawImage(0, 34, source_view)
        painter.drawImage(side + 12, 34, result_view)
        painter.setFont(QFont("Sans", 12))
        painter.setPen(QColor(0, 0, 0))
        painter.drawText(0, 0, side, 30, Qt.AlignCenter, "input, drawn with cubic resampling")
        painter.drawText(side + 12, 0, side, 30, Qt.AlignCenter, f"MLIN x{SCALE:g} (default model)")
        painter.end()
        canvas_img.save(str(OUT / "result_over_input.png"))
        print(f"screenshots: {OUT / 'result_over_input.png'}")
    dialog.shutdown()
    dialog.deleteLater()
    project.removeAllMapLayers()
    del dialog, canvas, layer, source
    import gc

    gc.collect()  # Python-held QGIS objects must go before QGIS does (3.22 crashes on exit otherwise)
    app.processEvents()
    app.exitQgis()
    return 0


def _render(layer, extent, size):
    from qgis.core import QgsMapRendererSequentialJob, QgsMapSettings
    from qgis.PyQt.QtGui import QColor

    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setOutputSize(size)
    settings.setExtent(extent)
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
