"""The zoom dialog's preview: MLIN next to bicubic on a small window of the input, made in the background.

A widget of its own that owns its task and its temporary folder, so the dialog only says when to
preview and when the settings changed. The preview is ``pipeline.superresolve`` on that window (the
run's own area of interest when the raster has a north-up geotransform), so it shows exactly what the
full run will produce; the bicubic pane is QGIS's own cubic resampler drawing the same window at the
same size.
"""
from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional, Protocol, Tuple

from qgis.core import (
    QgsApplication,
    QgsCoordinateTransform,
    QgsCubicRasterResampler,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
)
from qgis.gui import QgsMapToolEmitPoint
from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtGui import QColor, QImage, QPixmap
from qgis.PyQt.QtWidgets import QGridLayout, QGroupBox, QLabel, QPushButton, QWidget

from .task import SuperResolveTask, cancel_task

PREVIEW_OUT_PX = 128  # side of the preview output (shown 2x); the LR window is PREVIEW_OUT_PX / scale
PREVIEW_LR_MIN, PREVIEW_LR_MAX = 8, 48
PANE_PX = 256  # side of each preview pane on screen (previews of 64-128 px are shown 2-4x)
OUT_OF_DATE = "The preview is out of date: press Preview to see the new settings."


class PreviewHost(Protocol):
    """What the preview asks of the dialog that shows it (the current settings)."""

    iface: Optional[Any]
    project: QgsProject

    def layer(self) -> Optional[QgsRasterLayer]: ...
    def input_path(self) -> Optional[str]: ...
    def model_path(self) -> Optional[str]: ...
    def scale(self) -> float: ...
    def preview_key(self) -> Tuple[Any, ...]: ...
    def make_request(self, input_path: str, output_path: str, extent: Optional[Tuple[float, ...]] = None) -> Any: ...
    def fit_height(self) -> None: ...


def preview_window(width: int, height: int, centre: Tuple[float, float], scale: float) -> Tuple[int, int, int, int]:
    """(xoff, yoff, xsize, ysize) of the LR window previewed around ``centre`` (col, row), inside the raster."""
    side = int(min(PREVIEW_LR_MAX, max(PREVIEW_LR_MIN, math.ceil(PREVIEW_OUT_PX / scale))))
    xs, ys = min(side, width), min(side, height)
    x0 = int(round(centre[0] - xs / 2))
    y0 = int(round(centre[1] - ys / 2))
    return max(0, min(width - xs, x0)), max(0, min(height - ys, y0)), xs, ys


def render_layer(layer: QgsRasterLayer, size: QSize) -> QImage:
    """Draw a raster layer's full extent into an image of ``size`` with QGIS's renderer."""
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setOutputSize(size)
    settings.setExtent(layer.extent())
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def pane_pixmap(image: QImage) -> QPixmap:
    """Both panes at the same magnification, filling the pane: enlarged by whole pixels (nearest, so what
    is shown is the output's own pixels, not a screen smoothing), shrunk smoothly."""
    pixmap = QPixmap.fromImage(image)
    factor = PANE_PX / max(pixmap.width(), pixmap.height())
    if factor >= 2:
        n = int(factor)
        return pixmap.scaled(pixmap.width() * n, pixmap.height() * n, Qt.KeepAspectRatio, Qt.FastTransformation)
    if factor < 1:
        return pixmap.scaled(PANE_PX, PANE_PX, Qt.KeepAspectRatio, Qt.SmoothTransformation)
    return pixmap


class PreviewWidget(QGroupBox):
    """Preview button, spot picker and the two panes; runs one preview task at a time in its own folder."""

    def __init__(self, host: PreviewHost, parent: Optional[QWidget] = None) -> None:
        super().__init__("Preview", parent)
        self.host = host
        self.task: Optional[SuperResolveTask] = None
        self.folder: Optional[Path] = None  # temporary: the window's VRT and the preview output
        self.images: Tuple[Optional[QImage], Optional[QImage]] = (None, None)
        self.key: Tuple[Any, ...] = ()  # the settings the shown (or running) preview was made with
        self.point: Optional[QgsPointXY] = None  # the spot picked on the map (canvas CRS)
        self.pick_tool: Optional[QgsMapToolEmitPoint] = None
        grid = QGridLayout(self)
        self.button = QPushButton("Preview", self)
        self.button.clicked.connect(self.start)
        self.info = QLabel("", self)
        self.info.setWordWrap(True)
        self.bicubic_pane = QLabel(self)
        self.sr_pane = QLabel(self)
        for pane in (self.bicubic_pane, self.sr_pane):
            pane.setFixedSize(PANE_PX, PANE_PX)
            pane.setAlignment(Qt.AlignCenter)
            pane.setStyleSheet("background: #f0f0f0; border: 1px solid #c0c0c0;")
        self.pick_button = QPushButton("Pick the spot on the map", self)
        self.pick_button.setToolTip("Click the map canvas where the preview should be made")
        self.pick_button.clicked.connect(self.start_picking)
        grid.addWidget(self.button, 0, 0)
        grid.addWidget(self.pick_button, 0, 1)
        grid.addWidget(self.info, 1, 0, 1, 2)
        grid.addWidget(QLabel("Bicubic"), 2, 0, Qt.AlignHCenter)
        grid.addWidget(QLabel("MLIN"), 2, 1, Qt.AlignHCenter)
        grid.addWidget(self.bicubic_pane, 3, 0)
        grid.addWidget(self.sr_pane, 3, 1)

    def _canvas(self) -> Optional[Any]:
        return self.host.iface.mapCanvas() if self.host.iface is not None else None

    # -- where ------------------------------------------------------------------------------------------
    def start_picking(self) -> None:
        """The next click on the map canvas chooses the preview spot (QGIS's point tool), then previews."""
        canvas = self._canvas()
        if canvas is None:
            self.info.setText("No map canvas: the preview is made at the raster centre.")
            return
        self.pick_tool = QgsMapToolEmitPoint(canvas)
        self.pick_tool.canvasClicked.connect(self.set_point)
        canvas.setMapTool(self.pick_tool)
        self.info.setText("Click the map where the preview should be made.")

    def set_point(self, point: QgsPointXY, button: Any = None) -> None:
        """A click on the canvas (canvas CRS): the preview spot; the tool is released and a preview starts."""
        self.point = QgsPointXY(point)
        canvas = self._canvas()
        if canvas is not None and self.pick_tool is not None and canvas.mapTool() is self.pick_tool:
            canvas.unsetMapTool(self.pick_tool)
        self.clear()
        self.start()

    def centre(self, layer: QgsRasterLayer) -> Tuple[float, float]:
        """(col, row) of the spot picked on the map, else of the map canvas centre, when it falls inside
        the raster; else the raster centre."""
        centre = (layer.width() / 2.0, layer.height() / 2.0)
        canvas = self._canvas()
        if canvas is None or layer.rasterUnitsPerPixelX() <= 0 or layer.rasterUnitsPerPixelY() <= 0:
            return centre
        point = QgsPointXY(self.point if self.point is not None else canvas.center())
        canvas_crs = canvas.mapSettings().destinationCrs()
        if canvas_crs.isValid() and layer.crs().isValid() and canvas_crs != layer.crs():
            try:
                point = QgsCoordinateTransform(canvas_crs, layer.crs(), self.host.project).transform(point)
            except Exception:  # noqa: BLE001 - outside the CRS's domain: fall back to the raster centre
                return centre
        extent = layer.extent()
        if not extent.contains(point):
            return centre
        return ((point.x() - extent.xMinimum()) / layer.rasterUnitsPerPixelX(),
                (extent.yMaximum() - point.y()) / layer.rasterUnitsPerPixelY())

    # -- the task ---------------------------------------------------------------------------------------
    def start(self) -> Optional[SuperResolveTask]:
        """Super-resolve a small window (picked spot, canvas centre, else raster centre) in the background."""
        from osgeo import gdal

        host = self.host
        layer, path = host.layer(), host.input_path()
        if layer is None or path is None or self.task is not None or host.model_path() is None:
            if layer is not None and path is None:
                self.info.setText("No preview for layers that are not files; the run reads them.")
            return None
        window = preview_window(layer.width(), layer.height(), self.centre(layer), host.scale())
        self.clear_files()
        self.folder = Path(tempfile.mkdtemp(prefix="mlin-preview-"))
        vrt = self.folder / "window.vrt"
        # A virtual window of the input (no pixels copied): the core reads it like any raster.
        ds = gdal.Translate(str(vrt), path, format="VRT", srcWin=list(window))
        if ds is None:
            self.info.setText(f"Cannot read {path} for the preview.")
            return None
        src = gdal.Open(path)
        gt = src.GetGeoTransform(can_return_null=True) if src is not None else None
        ds = src = None
        output = str(self.folder / "preview_sr.tif")
        if gt is not None and gt[2] == 0 and gt[4] == 0:
            # The run's own area of interest on the raster itself: the same halo from outside the window
            # and the same input code (estimated from the whole raster), so the preview IS that window of the run.
            c0, r0, w, h = window
            xs, ys = (gt[0] + c0 * gt[1], gt[0] + (c0 + w) * gt[1]), (gt[3] + r0 * gt[5], gt[3] + (r0 + h) * gt[5])
            request = host.make_request(path, output, (min(xs), min(ys), max(xs), max(ys)))
        else:  # no (or a rotated) geotransform: the window alone, as its own small raster
            request = host.make_request(str(vrt), output)
        self.key = host.preview_key()
        self.task = SuperResolveTask(request, "preview", host.project, add_to_project=False, description="MLIN preview")
        self.task.done.connect(self._done)
        self.button.setEnabled(False)
        self.info.setText(f"Previewing {window[2]} × {window[3]} px at ({window[0]}, {window[1]}) …")
        QgsApplication.taskManager().addTask(self.task)
        return self.task

    def _done(self, ok: bool, text: str) -> None:
        task, self.task = self.task, None
        self.button.setEnabled(True)
        if not ok or task is None or task.result is None or self.folder is None:
            self.info.setText(text)
            return
        if self.key != self.host.preview_key():  # the settings changed while it ran: do not show it
            self.clear(OUT_OF_DATE)
            return
        result = task.result
        size = QSize(int(result.width), int(result.height))
        lr = QgsRasterLayer(str(self.folder / "window.vrt"), "lr", "gdal")
        sr = QgsRasterLayer(str(result.output_path), "sr", "gdal")
        if not (lr.isValid() and sr.isValid()):
            self.info.setText("The preview was computed but QGIS cannot draw it.")
            return
        lr.resampleFilter().setZoomedInResampler(QgsCubicRasterResampler())
        bicubic, mlin = render_layer(lr, size), render_layer(sr, size)
        del lr, sr  # release the files before they may be deleted
        self.images = (bicubic, mlin)
        self.bicubic_pane.setPixmap(pane_pixmap(bicubic))
        self.sr_pane.setPixmap(pane_pixmap(mlin))
        self.info.setText(f"×{self.host.scale():g}: {result.width} × {result.height} px. {text}")
        self.host.fit_height()

    # -- state ------------------------------------------------------------------------------------------
    def settings_changed(self) -> None:
        """A shown preview made with other settings no longer applies: clear it and say so."""
        if self.images != (None, None) and self.key != self.host.preview_key():
            self.clear(OUT_OF_DATE)

    def clear(self, message: str = "") -> None:
        for pane in (self.bicubic_pane, self.sr_pane):
            pane.setPixmap(QPixmap())
        self.images = (None, None)
        self.info.setText(message)

    def clear_files(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def shutdown(self) -> None:
        """Cancel a running preview and remove its files (plugin unload, dialog destruction)."""
        cancel_task(self.task, "preview")
        self.clear_files()
