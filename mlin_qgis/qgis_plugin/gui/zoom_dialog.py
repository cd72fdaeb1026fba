"""The zoom dialog: pick a raster, drag a zoom factor, see the size/time estimate and a preview, run.

Everything numerical happens in mlin_qgis.core: the estimate is ``pipeline.estimate`` and both the
preview and the run are ``pipeline.superresolve`` (the preview on a small virtual window of the
input, so it shows exactly what the full run will produce, data-type mapping and masks included).
This module only arranges widgets, runs tasks and asks QGIS's renderer to draw the results; the
bicubic pane is QGIS's own cubic resampler drawing the same window at the same size.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional, Tuple

from qgis.core import (
    QgsApplication,
    QgsCoordinateTransform,
    QgsCubicRasterResampler,
    QgsMapLayerProxyModel,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsPointXY,
    QgsProcessingUtils,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox, QgsMapToolEmitPoint, QgsMapToolExtent
from qgis.PyQt.QtCore import QSize, Qt, QTimer
from qgis.PyQt.QtGui import QColor, QImage, QPixmap
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLayout,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from mlin_qgis.core.aware import LOOKS

from .. import dependencies
from ..common import (
    DEVICES,
    FALLBACK_MAX_SCALE,
    output_layer_name,
    raster_file_path,
    shipped_models,
)
from ..layer_source import is_web_layer
from .task import SuperResolveTask


def unique_path(folder: Path, stem: str, suffix: str) -> Path:
    """``folder/stem.suffix``, or ``stem_2``, ``stem_3``... when taken (nothing is ever overwritten)."""
    candidate = folder / f"{stem}{suffix}"
    n = 2
    while candidate.exists():
        candidate = folder / f"{stem}_{n}{suffix}"
        n += 1
    return candidate


MIN_ZOOM = 1.1
SLIDER_STEPS_PER_UNIT = 10  # slider ints = scale * 10 (0.1 steps)
PREVIEW_OUT_PX = 128  # side of the preview output (shown 2x); the LR window is PREVIEW_OUT_PX / scale
PREVIEW_LR_MIN, PREVIEW_LR_MAX = 8, 48
PANE_PX = 256  # side of each preview pane on screen (previews of 64-128 px are shown 2-4x)


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KB' (decimal units, as file managers show)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} TB"


def human_seconds(s: float) -> str:
    """Rounded duration for a UI label."""
    if s < 1:
        return "< 1 s"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


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


STATUS_MAX_PX = 80  # height of the scrolling status text

AREAS = (("Whole layer", "whole"), ("Current map view", "view"), ("Rectangle drawn on the map", "drawn"))


def _rect_tuple(rect: QgsRectangle) -> Tuple[float, float, float, float]:
    return (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())


class ZoomDialog(QDialog):
    """Super-resolve the chosen raster layer by a chosen zoom; results are added to the project."""

    def __init__(self, iface: Optional[Any] = None, parent: Optional[QWidget] = None,
                 project: Optional[QgsProject] = None) -> None:
        super().__init__(parent)
        self.iface = iface
        self.project = project or QgsProject.instance()
        self.task: Optional[SuperResolveTask] = None
        self.preview_task: Optional[SuperResolveTask] = None
        self.preview_dir: Optional[Path] = None
        self.preview_images: Tuple[Optional[QImage], Optional[QImage]] = (None, None)
        self._preview_key: Tuple[Any, ...] = ()  # the settings the shown (or running) preview was made with
        self.last_message = ""
        self.setWindowTitle("MLIN Super-Resolution")
        self.setMinimumWidth(480)
        self.setObjectName("MlinZoomDialog")
        self._build()
        self._estimate_timer = QTimer(self)
        self._estimate_timer.setSingleShot(True)
        self._estimate_timer.setInterval(120)  # do not open the raster on every slider tick
        self._estimate_timer.timeout.connect(self.update_estimate)
        self.drawn_area: Optional[QgsRectangle] = None  # in the canvas CRS
        self.map_tool: Optional[Any] = None
        self._on_model_changed()
        self.select_active_layer()
        self._area_changed()
        self.update_estimate()

    # -- construction ---------------------------------------------------------------------------------
    def _build(self) -> None:
        form = QFormLayout()
        self.layer_combo = QgsMapLayerComboBox(self)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.layer_combo.layerChanged.connect(self._settings_changed)
        form.addRow("Raster layer", self.layer_combo)

        self.area_combo = QComboBox(self)
        self.area_combo.setObjectName("areaCombo")
        for label, key in AREAS:
            self.area_combo.addItem(label, key)
        self.area_combo.currentIndexChanged.connect(self._area_changed)
        self.draw_button = QPushButton("Draw on map", self)
        self.draw_button.setToolTip("Drag a rectangle on the map canvas: only that area is super-resolved")
        self.draw_button.clicked.connect(self.start_drawing)
        area_row = QHBoxLayout()
        area_row.addWidget(self.area_combo, 1)
        area_row.addWidget(self.draw_button)
        form.addRow("Area", area_row)

        self.model_combo = QComboBox(self)
        for entry in shipped_models():
            self.model_combo.addItem(entry.name, entry.spec)
            self.model_combo.setItemData(self.model_combo.count() - 1, entry.card.description, Qt.ToolTipRole)
        if self.model_combo.count() == 0:
            self.model_combo.addItem("(no model installed)", None)
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        self.device_combo = QComboBox(self)
        self.device_combo.addItems(list(DEVICES))
        self._offer_only_runnable_devices()
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(QLabel("Device"))
        model_row.addWidget(self.device_combo)
        form.addRow("Model", model_row)

        self.slider = QSlider(Qt.Horizontal, self)
        self.slider.setSingleStep(1)
        self.slider.setPageStep(SLIDER_STEPS_PER_UNIT)
        self.spin = QDoubleSpinBox(self)
        self.spin.setDecimals(2)
        self.spin.setSingleStep(0.1)
        self.spin.setPrefix("×")
        self.slider.valueChanged.connect(self._slider_moved)
        self.spin.valueChanged.connect(self._spin_changed)
        zoom_row = QHBoxLayout()
        zoom_row.addWidget(self.slider, 1)
        zoom_row.addWidget(self.spin)
        form.addRow("Zoom", zoom_row)

        self.output_widget = QgsFileWidget(self)
        self.output_widget.setStorageMode(QgsFileWidget.SaveFile)
        self.output_widget.setFilter("GeoTIFF (*.tif *.tiff)")
        self.output_widget.lineEdit().setPlaceholderText("[New file next to the input]")
        form.addRow("Output", self.output_widget)

        self.ensemble_check = QCheckBox("Best quality (8x the time)", self)
        self.ensemble_check.setToolTip("Average of the 8 flips/transposes of the input: a small measured gain, "
                                       "8 passes")
        self.ensemble_check.setObjectName("ensembleCheck")
        self.ensemble_check.toggled.connect(lambda _checked: self.update_estimate())
        self.all_bands_check = QCheckBox("Every band", self)
        self.all_bands_check.setToolTip("Every non-alpha band, in groups of three (left-overs as grey); "
                                        "otherwise the RGB bands")
        self.all_bands_check.setObjectName("allBandsCheck")
        self.all_bands_check.toggled.connect(lambda _checked: self._settings_changed())
        self.fidelity_check = QCheckBox("Radiometric fidelity", self)
        self.fidelity_check.setToolTip("Correct the output so that its area average over each input pixel gives "
                                       "back that pixel, per band (for indices, classification, reflectance); "
                                       "every output reports how far it is (FIDELITY metadata)")
        self.fidelity_check.setObjectName("fidelityCheck")
        self.looks_combo = QComboBox(self)
        self.looks_combo.addItems(["auto", *LOOKS])
        self.looks_combo.setToolTip("How the input looks, which sets the degradation-aware model's weights: auto "
                                    "reads it once from the whole raster (preview and run agree); or say it")
        self.looks_combo.setObjectName("looksCombo")
        self.looks_combo.currentIndexChanged.connect(lambda _i: self._settings_changed())
        options_row = QHBoxLayout()  # one row: the dialog stays short enough for a laptop screen
        options_row.addWidget(self.ensemble_check)
        options_row.addWidget(self.all_bands_check)
        options_row.addWidget(self.fidelity_check)
        options_row.addWidget(QLabel("Input looks:", self))
        options_row.addWidget(self.looks_combo)
        options_row.addStretch(1)
        form.addRow("", options_row)

        self.estimate_label = QLabel(self)
        self.estimate_label.setObjectName("estimateLabel")
        self.estimate_label.setWordWrap(True)
        form.addRow("", self.estimate_label)

        preview_box = QGroupBox("Preview", self)
        grid = QGridLayout(preview_box)
        self.preview_button = QPushButton("Preview", preview_box)
        self.preview_button.clicked.connect(self.start_preview)
        self.preview_info = QLabel("", preview_box)
        self.preview_info.setWordWrap(True)
        self.bicubic_pane = QLabel(preview_box)
        self.sr_pane = QLabel(preview_box)
        for pane in (self.bicubic_pane, self.sr_pane):
            pane.setFixedSize(PANE_PX, PANE_PX)
            pane.setAlignment(Qt.AlignCenter)
            pane.setStyleSheet("background: #f0f0f0; border: 1px solid #c0c0c0;")
        self.pick_button = QPushButton("Pick the spot on the map", preview_box)
        self.pick_button.setToolTip("Click the map canvas where the preview should be made")
        self.pick_button.clicked.connect(self.start_picking)
        grid.addWidget(self.preview_button, 0, 0)
        grid.addWidget(self.pick_button, 0, 1)
        grid.addWidget(self.preview_info, 1, 0, 1, 2)
        grid.addWidget(QLabel("Bicubic"), 2, 0, Qt.AlignHCenter)
        grid.addWidget(QLabel("MLIN"), 2, 1, Qt.AlignHCenter)
        grid.addWidget(self.bicubic_pane, 3, 0)
        grid.addWidget(self.sr_pane, 3, 1)

        self.progress = QProgressBar(self)
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.status_label = QLabel(self)
        self.status_label.setObjectName("statusLabel")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)

        self.run_button = QPushButton("Run", self)
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.start_run)
        self.cancel_button = QPushButton("Close", self)
        self.cancel_button.clicked.connect(self.cancel_or_close)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)

        layout = QVBoxLayout(self)
        layout.setSizeConstraint(QLayout.SetMinimumSize)  # grow with wrapped status texts, never clip panes
        layout.addLayout(form)
        layout.addWidget(preview_box)
        layout.addWidget(self.progress)
        # long texts (an install command, an error) scroll inside a bounded area instead of growing the
        # dialog past the screen and pushing the preview out
        self.status_area = QScrollArea(self)
        self.status_area.setObjectName("statusArea")
        self.status_area.setWidgetResizable(True)
        self.status_area.setFrameShape(QFrame.NoFrame)
        self.status_area.setMaximumHeight(STATUS_MAX_PX)
        self.status_area.setWidget(self.status_label)
        layout.addWidget(self.status_area)
        layout.addLayout(buttons)
        self.device_combo.currentIndexChanged.connect(self._settings_changed)
        if not dependencies.onnxruntime_available():
            self.status_label.setText(dependencies.onnxruntime_install_text())

    def _offer_only_runnable_devices(self) -> None:
        """Grey out cuda when the installed onnxruntime cannot run it (and say why)."""
        from mlin_qgis.core.engine import cuda_offered

        if dependencies.onnxruntime_available() and cuda_offered():
            return
        item = self.device_combo.model().item(DEVICES.index("cuda"))
        if item is not None:
            item.setEnabled(False)
            item.setToolTip("This onnxruntime has no CUDA support (install onnxruntime-gpu for an NVIDIA GPU).")

    # -- the area of interest -------------------------------------------------------------------------
    def area_kind(self) -> str:
        return str(self.area_combo.currentData())

    def _canvas(self) -> Optional[Any]:
        return self.iface.mapCanvas() if self.iface is not None else None

    def _area_changed(self, *args: Any) -> None:
        """Map-view and drawn areas need a map canvas; the Draw button goes with the drawn choice."""
        has_canvas = self._canvas() is not None
        for key in ("view", "drawn"):
            item = self.area_combo.model().item(self.area_combo.findData(key))
            if item is not None:
                item.setEnabled(has_canvas)
        self.draw_button.setVisible(self.area_kind() == "drawn")
        self._settings_changed()

    def start_drawing(self) -> None:
        """Let the user drag a rectangle on the map canvas (QGIS's own extent tool)."""
        canvas = self._canvas()
        if canvas is None:
            return
        self.map_tool = QgsMapToolExtent(canvas)
        self.map_tool.extentChanged.connect(self.set_drawn_area)
        canvas.setMapTool(self.map_tool)
        self.status_label.setText("Drag a rectangle on the map for the area to super-resolve.")

    def set_drawn_area(self, rect: QgsRectangle) -> None:
        """The rectangle drawn on the canvas (canvas CRS) becomes the area; the map tool is released."""
        if rect is None or rect.isEmpty():
            return
        self.drawn_area = QgsRectangle(rect)
        self.area_combo.setCurrentIndex(self.area_combo.findData("drawn"))
        canvas = self._canvas()
        if canvas is not None and self.map_tool is not None and canvas.mapTool() is self.map_tool:
            canvas.unsetMapTool(self.map_tool)
        self.status_label.setText("")
        self._settings_changed()

    def area(self, layer: QgsRasterLayer) -> Optional[QgsRectangle]:
        """The chosen area in the layer's CRS (None: the whole layer)."""
        kind, canvas = self.area_kind(), self._canvas()
        if kind == "whole" or canvas is None:
            return None
        rect = canvas.extent() if kind == "view" else self.drawn_area
        if rect is None or rect.isEmpty():
            return None
        canvas_crs = canvas.mapSettings().destinationCrs()
        if canvas_crs.isValid() and layer.crs().isValid() and canvas_crs != layer.crs():
            rect = QgsCoordinateTransform(canvas_crs, layer.crs(), self.project).transformBoundingBox(rect)
        return QgsRectangle(rect)

    def read_resolution(self, layer: QgsRasterLayer) -> Optional[float]:
        """Web layers are read at the map's current scale (canvas map units per pixel, when the canvas
        shows the layer's CRS); other layers at their own resolution."""
        canvas = self._canvas()
        if not is_web_layer(layer) or canvas is None:
            return None
        if canvas.mapSettings().destinationCrs() != layer.crs():
            return None
        return float(canvas.mapUnitsPerPixel()) or None

    # -- state --------------------------------------------------------------------------------------
    def current_card(self) -> Optional[Any]:
        entries = shipped_models()
        index = self.model_combo.currentIndex()
        return entries[index].card if 0 <= index < len(entries) else None

    def model_path(self) -> Optional[str]:
        return self.model_combo.currentData()

    def scale(self) -> float:
        return float(self.spin.value())

    def set_scale(self, value: float) -> None:
        self.spin.setValue(value)

    def layer(self) -> Optional[QgsRasterLayer]:
        layer = self.layer_combo.currentLayer()
        return layer if isinstance(layer, QgsRasterLayer) else None

    def input_path(self) -> Optional[str]:
        layer = self.layer()
        return raster_file_path(layer) if layer is not None else None

    def select_active_layer(self) -> None:
        """Default to the layer the user is working on (active layer) when it is a raster."""
        if self.iface is None:
            return
        active = self.iface.activeLayer()
        if isinstance(active, QgsRasterLayer):
            self.layer_combo.setLayer(active)

    def _on_model_changed(self) -> None:
        """Zoom range follows the model: ×1.1 to its hard limit (fallback ×16)."""
        card = self.current_card()
        hard = float(card.hard_max_scale) if card is not None else FALLBACK_MAX_SCALE
        top = math.floor(hard * SLIDER_STEPS_PER_UNIT) / SLIDER_STEPS_PER_UNIT
        current = self.spin.value() if self.spin.value() >= MIN_ZOOM else 2.0
        self.spin.blockSignals(True)
        self.slider.blockSignals(True)
        self.spin.setRange(MIN_ZOOM, top)
        self.slider.setRange(int(round(MIN_ZOOM * SLIDER_STEPS_PER_UNIT)), int(round(top * SLIDER_STEPS_PER_UNIT)))
        self.spin.setValue(min(current, top))
        self.slider.setValue(int(round(self.spin.value() * SLIDER_STEPS_PER_UNIT)))
        self.spin.blockSignals(False)
        self.slider.blockSignals(False)
        self._settings_changed()

    def _slider_moved(self, value: int) -> None:
        self.spin.blockSignals(True)
        self.spin.setValue(value / SLIDER_STEPS_PER_UNIT)
        self.spin.blockSignals(False)
        self._settings_changed()

    def _spin_changed(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(int(round(value * SLIDER_STEPS_PER_UNIT)))
        self.slider.blockSignals(False)
        self._settings_changed()

    def _settings_changed(self, *args: Any) -> None:
        """Layer, zoom, model, bands or area changed: the last run's message and the preview no longer apply."""
        if self.task is None and self.status_label.text() != dependencies.onnxruntime_install_text():
            self.status_label.setText("")
        if hasattr(self, "sr_pane") and self.preview_images != (None, None) and \
                self._preview_key != self.preview_key():
            self.clear_preview("The preview is out of date: press Preview to see the new settings.")
        self._estimate_timer.start()

    def preview_key(self) -> Tuple[Any, ...]:
        """What a preview depends on: layer, zoom, model, device, bands."""
        layer = self.layer()
        return (layer.id() if layer is not None else None, round(self.scale(), 4), self.model_path(),
                self.device_combo.currentText(), self.all_bands_check.isChecked(), self.looks_combo.currentText(),
                self.fidelity_check.isChecked())

    def clear_preview(self, message: str = "") -> None:
        for pane in (self.bicubic_pane, self.sr_pane):
            pane.setPixmap(QPixmap())
        self.preview_images = (None, None)
        self.preview_info.setText(message)

    def update_estimate(self) -> None:
        """Output size, file size and time from pipeline.estimate, plus a warning above the recommended zoom."""
        from mlin_qgis.core import pipeline
        from mlin_qgis.core.errors import MlinError

        layer, path = self.layer(), self.input_path()
        if layer is None:
            self.estimate_label.setText("Choose a raster layer.")
            self.run_button.setEnabled(False)
            return
        area = self.area(layer)
        if path is None:
            if is_web_layer(layer) and area is None:
                self.estimate_label.setText(f"Layer '{layer.name()}' is a web map: choose the map view or draw "
                                            "a rectangle as the area.")
                self.run_button.setEnabled(False)
                return
            self.estimate_label.setText(f"Layer '{layer.name()}' ({layer.providerType()}) is read through QGIS "
                                        "into a temporary GeoTIFF when the run starts; no preview.")
            self.run_button.setEnabled(self.task is None and self.model_path() is not None)
            return
        try:
            est = pipeline.estimate(path, self.scale(), self.model_path(), ensemble=self.ensemble(),
                                    all_bands=self.all_bands_check.isChecked(),
                                    extent=None if area is None else _rect_tuple(area))
        except MlinError as exc:
            self.estimate_label.setText(str(exc))
            self.run_button.setEnabled(False)
            return
        self.estimate_label.setToolTip(f"Time estimated from {est.basis}")
        text = (f"Output {est.width} × {est.height} px · about {human_bytes(est.bytes)} · "
                f"about {human_seconds(est.seconds)}" + (" (8 passes)" if self.ensemble() > 1 else ""))
        card = self.current_card()
        if card is not None and self.scale() > card.recommended_max_scale:
            text += (f"<br><span style='color:#a05a00'>Above ×{card.recommended_max_scale:g}, the largest zoom "
                     f"recommended for {card.name}: expect softer detail.</span>")
        self.estimate_label.setText(text)
        self.run_button.setEnabled(self.task is None and self.model_path() is not None)

    # -- the run ------------------------------------------------------------------------------------
    def output_path(self, layer_name: str, input_path: Optional[str] = None) -> str:
        """The chosen path; else a new, uniquely named file next to the input (kept when QGIS exits,
        unlike a temporary file), or in QGIS's temp folder when the input's folder is not writable."""
        chosen = self.output_widget.filePath().strip()
        if chosen:
            return chosen if chosen.lower().endswith((".tif", ".tiff")) else chosen + ".tif"
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", layer_name).strip("_") or "raster"
        name = f"{safe}_x{self.scale():g}_mlin"
        # next to the input; for layers that are not files, the project's folder, else the home folder
        folder = Path(input_path).parent if input_path else Path(self.project.homePath() or Path.home())
        if folder.is_dir() and os.access(folder, os.W_OK):
            return str(unique_path(folder, name, ".tif"))
        return QgsProcessingUtils.generateTempFilename(f"{name}.tif")

    def ensemble(self) -> int:
        """8 when the best-quality box is ticked, else 1."""
        return 8 if self.ensemble_check.isChecked() else 1

    def _model_is_aware(self) -> bool:
        """Whether the chosen model reads --input-looks (the degradation-aware one, auto when it is installed)."""
        from mlin_qgis.core.auto import aware_folder

        return aware_folder(self.model_path()) is not None

    def _request(self, input_path: str, output_path: str, extent: Optional[Tuple[float, ...]] = None) -> Any:
        from mlin_qgis.core.pipeline import SuperResolveRequest

        return SuperResolveRequest(input_path=input_path, output_path=output_path, scale=self.scale(),
                                   model=self.model_path(), device=self.device_combo.currentText(),
                                   ensemble=self.ensemble(), all_bands=self.all_bands_check.isChecked(),
                                   extent=extent, fidelity=self.fidelity_check.isChecked(),
                                   input_looks=self.looks_combo.currentText() if self._model_is_aware() else "auto")

    def start_run(self) -> Optional[SuperResolveTask]:
        """Queue the full run as a QgsTask; the result layer is added to the project when it ends.
        A layer that is not a file is read (a clone of it, in the task) into a temporary GeoTIFF first."""
        layer, path = self.layer(), self.input_path()
        if layer is None or self.task is not None:
            return None
        area = self.area(layer)
        if path is None:
            if is_web_layer(layer) and area is None:
                return None
            request = self._request("", self.output_path(layer.name(), None))
            read = (layer.clone(), area, self.read_resolution(layer))
        else:
            request = self._request(path, self.output_path(layer.name(), path),
                                    None if area is None else _rect_tuple(area))
            read = None
        self.task = SuperResolveTask(request, output_layer_name(layer.name(), self.scale()), self.project,
                                     read_layer=read)
        self.task.progressChanged.connect(lambda p: self.progress.setValue(int(p)))
        self.task.message.connect(self._task_message)
        self.task.done.connect(self._run_done)
        self.progress.setValue(0)
        self.status_label.setText(f"Running: {request.output_path}")
        self.run_button.setEnabled(False)
        self.cancel_button.setText("Cancel")
        QgsApplication.taskManager().addTask(self.task)
        return self.task

    def _task_message(self, text: str) -> None:
        self.last_message = text
        self.status_label.setText(text)

    def _fit_height(self) -> None:
        """Grow (never shrink) the window when wrapped texts need more room."""
        needed = self.sizeHint().height()
        if self.height() < needed:
            self.resize(self.width(), needed)

    def _run_done(self, ok: bool, text: str) -> None:
        self.task = None  # QGIS deletes finished tasks; never touch it again
        self.status_label.setText(text)
        if ok:
            self.progress.setValue(100)
        self.cancel_button.setText("Close")
        self.update_estimate()
        self._fit_height()

    def cancel_or_close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.status_label.setText("Cancelling…")
        else:
            self.close()

    # -- the preview --------------------------------------------------------------------------------
    def start_picking(self) -> None:
        """The next click on the map canvas chooses the preview spot (QGIS's point tool), then previews."""
        canvas = self._canvas()
        if canvas is None:
            self.preview_info.setText("No map canvas: the preview is made at the raster centre.")
            return
        self.pick_tool = QgsMapToolEmitPoint(canvas)
        self.pick_tool.canvasClicked.connect(self.set_preview_point)
        canvas.setMapTool(self.pick_tool)
        self.preview_info.setText("Click the map where the preview should be made.")

    def set_preview_point(self, point: QgsPointXY, button: Any = None) -> None:
        """A click on the canvas (canvas CRS): the preview spot; the tool is released and a preview starts."""
        self.preview_point = QgsPointXY(point)
        canvas = self._canvas()
        tool = getattr(self, "pick_tool", None)
        if canvas is not None and tool is not None and canvas.mapTool() is tool:
            canvas.unsetMapTool(tool)
        self.clear_preview()
        self.start_preview()

    def preview_centre(self, layer: QgsRasterLayer) -> Tuple[float, float]:
        """(col, row) of the spot picked on the map, else of the map canvas centre, when it falls inside
        the raster; else the raster centre."""
        centre = (layer.width() / 2.0, layer.height() / 2.0)
        if self.iface is None or layer.rasterUnitsPerPixelX() <= 0 or layer.rasterUnitsPerPixelY() <= 0:
            return centre
        canvas = self.iface.mapCanvas()
        picked = getattr(self, "preview_point", None)
        point = QgsPointXY(picked if picked is not None else canvas.center())
        canvas_crs = canvas.mapSettings().destinationCrs()
        if canvas_crs.isValid() and layer.crs().isValid() and canvas_crs != layer.crs():
            try:
                point = QgsCoordinateTransform(canvas_crs, layer.crs(), self.project).transform(point)
            except Exception:  # noqa: BLE001 - outside the CRS's domain: fall back to the raster centre
                return centre
        extent = layer.extent()
        if not extent.contains(point):
            return centre
        return ((point.x() - extent.xMinimum()) / layer.rasterUnitsPerPixelX(),
                (extent.yMaximum() - point.y()) / layer.rasterUnitsPerPixelY())

    def start_preview(self) -> Optional[SuperResolveTask]:
        """Super-resolve a small window (canvas centre, else raster centre) in the background."""
        from osgeo import gdal

        layer, path = self.layer(), self.input_path()
        if layer is None or path is None or self.preview_task is not None or self.model_path() is None:
            if layer is not None and path is None:
                self.preview_info.setText("No preview for layers that are not files; the run reads them.")
            return None
        window = preview_window(layer.width(), layer.height(), self.preview_centre(layer), self.scale())
        self._clear_preview_files()
        self.preview_dir = Path(tempfile.mkdtemp(prefix="mlin-preview-"))
        vrt = self.preview_dir / "window.vrt"
        # A virtual window of the input (no pixels copied): the core reads it like any raster.
        ds = gdal.Translate(str(vrt), path, format="VRT", srcWin=list(window))
        if ds is None:
            self.preview_info.setText(f"Cannot read {path} for the preview.")
            return None
        src = gdal.Open(path)
        gt = src.GetGeoTransform(can_return_null=True) if src is not None else None
        ds = src = None
        if gt is not None and gt[2] == 0 and gt[4] == 0:
            # The run's own area of interest on the raster itself: the same halo from outside the window
            # and the same input code (estimated from the whole raster), so the preview IS that window of the run.
            c0, r0, w, h = window
            xs, ys = (gt[0] + c0 * gt[1], gt[0] + (c0 + w) * gt[1]), (gt[3] + r0 * gt[5], gt[3] + (r0 + h) * gt[5])
            request = self._request(path, str(self.preview_dir / "preview_sr.tif"),
                                    (min(xs), min(ys), max(xs), max(ys)))
        else:  # no (or a rotated) geotransform: the window alone, as its own small raster
            request = self._request(str(vrt), str(self.preview_dir / "preview_sr.tif"))
        self._preview_key = self.preview_key()
        self.preview_task = SuperResolveTask(request, "preview", self.project, add_to_project=False,
                                             description="MLIN preview")
        self.preview_task.done.connect(self._preview_done)
        self.preview_button.setEnabled(False)
        self.preview_info.setText(f"Previewing {window[2]} × {window[3]} px at ({window[0]}, {window[1]}) …")
        QgsApplication.taskManager().addTask(self.preview_task)
        return self.preview_task

    def _preview_done(self, ok: bool, text: str) -> None:
        task, self.preview_task = self.preview_task, None
        self.preview_button.setEnabled(True)
        if not ok or task is None or task.result is None or self.preview_dir is None:
            self.preview_info.setText(text)
            return
        if self._preview_key != self.preview_key():  # the settings changed while it ran: do not show it
            self.clear_preview("The preview is out of date: press Preview to see the new settings.")
            return
        result = task.result
        size = QSize(int(result.width), int(result.height))
        lr = QgsRasterLayer(str(self.preview_dir / "window.vrt"), "lr", "gdal")
        sr = QgsRasterLayer(str(result.output_path), "sr", "gdal")
        if not (lr.isValid() and sr.isValid()):
            self.preview_info.setText("The preview was computed but QGIS cannot draw it.")
            return
        lr.resampleFilter().setZoomedInResampler(QgsCubicRasterResampler())
        bicubic, mlin = render_layer(lr, size), render_layer(sr, size)
        del lr, sr  # release the files before they may be deleted
        self.preview_images = (bicubic, mlin)
        for pane, image in ((self.bicubic_pane, bicubic), (self.sr_pane, mlin)):
            # both panes at the same magnification, filling the pane: enlarged by whole pixels (nearest,
            # so what is shown is the output's own pixels, not a screen smoothing), shrunk smoothly
            pixmap = QPixmap.fromImage(image)
            factor = PANE_PX / max(pixmap.width(), pixmap.height())
            if factor >= 2:
                n = int(factor)
                pixmap = pixmap.scaled(pixmap.width() * n, pixmap.height() * n, Qt.KeepAspectRatio,
                                       Qt.FastTransformation)
            elif factor < 1:
                pixmap = pixmap.scaled(PANE_PX, PANE_PX, Qt.KeepAspectRatio, Qt.SmoothTransformation)
            pane.setPixmap(pixmap)
        self.preview_info.setText(f"×{self.scale():g}: {result.width} × {result.height} px. {text}")
        self._fit_height()

    def _clear_preview_files(self) -> None:
        if self.preview_dir is not None:
            shutil.rmtree(self.preview_dir, ignore_errors=True)
            self.preview_dir = None

    # -- closing ------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel running tasks and remove preview files (plugin unload, dialog destruction)."""
        for task in (self.task, self.preview_task):
            if task is not None:
                try:
                    task.cancel()
                except RuntimeError:  # already deleted by the task manager
                    pass
        self._estimate_timer.stop()
        self._clear_preview_files()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        if self.task is None and self.preview_task is None:
            self._clear_preview_files()
        super().closeEvent(event)
