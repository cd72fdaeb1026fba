"""The zoom dialog: pick a raster, drag a zoom factor, see the size/time estimate and a preview, run.

Everything numerical happens in mlin_qgis.core: the estimate is ``pipeline.estimate`` (estimate.py: in a
task while it calibrates, so the dialog never blocks) and both the preview and the run are
``pipeline.superresolve``. This module arranges the form and runs the full run as a task; the preview
(preview.py) and the area of interest (area_picker.py) are widgets of their own. Every error the
dialog shows goes through :func:`~.errors.dialog_error_text`.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Optional, Tuple

from qgis.core import QgsApplication, QgsMapLayerProxyModel, QgsProcessingUtils, QgsProject, QgsRasterLayer
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
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
from ..common import DEVICES, FALLBACK_MAX_SCALE, output_layer_name, raster_file_path, shipped_models
from ..layer_source import is_web_layer
from .area_picker import AreaPicker, rect_tuple
from .errors import dialog_error_text
from .estimate import EstimateArgs, EstimateLabel
from .preview import PreviewWidget
from .task import SuperResolveTask, cancel_task

MIN_ZOOM = 1.1
SLIDER_STEPS_PER_UNIT = 10  # slider ints = scale * 10 (0.1 steps)
STATUS_MAX_PX = 80  # height of the scrolling status text


def unique_path(folder: Path, stem: str, suffix: str) -> Path:
    """``folder/stem.suffix``, or ``stem_2``, ``stem_3``... when taken (nothing is ever overwritten)."""
    candidate = folder / f"{stem}{suffix}"
    n = 2
    while candidate.exists():
        candidate = folder / f"{stem}_{n}{suffix}"
        n += 1
    return candidate


class ZoomDialog(QDialog):
    """Super-resolve the chosen raster layer by a chosen zoom; results are added to the project."""

    def __init__(self, iface: Optional[Any] = None, parent: Optional[QWidget] = None,
                 project: Optional[QgsProject] = None) -> None:
        super().__init__(parent)
        self.iface = iface
        self.project = project or QgsProject.instance()
        self.task: Optional[SuperResolveTask] = None
        self.last_message = ""
        self.setWindowTitle("MLIN Super-Resolution")
        self.setMinimumWidth(480)
        self.setObjectName("MlinZoomDialog")
        self._estimate_timer = QTimer(self)
        self._estimate_timer.setSingleShot(True)
        self._estimate_timer.setInterval(120)  # do not open the raster on every slider tick
        self._estimate_timer.timeout.connect(self.update_estimate)
        self._build()
        self._on_model_changed()
        self.select_active_layer()
        self.update_estimate()

    # -- construction ---------------------------------------------------------------------------------
    def _build(self) -> None:
        form = QFormLayout()
        self.layer_combo = QgsMapLayerComboBox(self)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.layer_combo.layerChanged.connect(self._settings_changed)
        form.addRow("Raster layer", self.layer_combo)
        self.area_picker = AreaPicker(self.iface, self.project, self)
        self.area_picker.changed.connect(self._settings_changed)
        self.area_picker.message.connect(lambda text: self.status_label.setText(text))
        form.addRow("Area", self.area_picker)

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

        self.estimate_label = EstimateLabel(self)
        self.estimate_label.ready.connect(self._estimate_ready)
        form.addRow("", self.estimate_label)
        self.preview = PreviewWidget(self, self)

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
        layout.addWidget(self.preview)
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
        if hasattr(self, "preview"):
            self.preview.settings_changed()
        self._estimate_timer.start()

    def preview_key(self) -> Tuple[Any, ...]:
        """What a preview depends on: layer, zoom, model, device, bands, input looks, fidelity."""
        layer = self.layer()
        return (layer.id() if layer is not None else None, round(self.scale(), 4), self.model_path(),
                self.device_combo.currentText(), self.all_bands_check.isChecked(), self.looks_combo.currentText(),
                self.fidelity_check.isChecked())

    # -- the estimate -------------------------------------------------------------------------------
    def update_estimate(self) -> None:
        """Output size, file size and time (estimate.py: in a task while the model's speed is measured)."""
        layer, path = self.layer(), self.input_path()
        runnable = self.task is None and self.model_path() is not None
        if layer is None or path is None:
            self.estimate_label.cancel()
            area = self.area_picker.area(layer) if layer is not None else None
            if layer is None:
                text, runnable = "Choose a raster layer.", False
            elif is_web_layer(layer) and area is None:
                text, runnable = (f"Layer '{layer.name()}' is a web map: choose the map view or draw a rectangle as "
                                  "the area."), False
            else:
                text = (f"Layer '{layer.name()}' ({layer.providerType()}) is read through QGIS into a temporary "
                        "GeoTIFF when the run starts; no preview.")
            self.estimate_label.setText(text)
            self.run_button.setEnabled(runnable)
            return
        area = self.area_picker.area(layer)
        self.run_button.setEnabled(runnable)
        self.estimate_label.request(EstimateArgs(path, self.scale(), self.model_path(), self.ensemble(),
                                                 self.all_bands_check.isChecked(),
                                                 None if area is None else rect_tuple(area)), self.current_card())

    def _estimate_ready(self, ok: bool) -> None:
        self.run_button.setEnabled(ok and self.task is None and self.model_path() is not None)

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

    def make_request(self, input_path: str, output_path: str, extent: Optional[Tuple[float, ...]] = None) -> Any:
        """The core request for the current settings (the run's and the preview's)."""
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
        area = self.area_picker.area(layer)
        if path is None:
            if is_web_layer(layer) and area is None:
                return None
            request = self.make_request("", self.output_path(layer.name(), None))
            read = (layer.clone(), area, self.area_picker.read_resolution(layer))
        else:
            request = self.make_request(path, self.output_path(layer.name(), path),
                                        None if area is None else rect_tuple(area))
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

    def start_preview(self) -> Optional[SuperResolveTask]:
        """Preview a small window of the current settings (the preview widget's own task)."""
        return self.preview.start()

    def show_error(self, exc: BaseException) -> str:
        """Show on the status line what the dialog's one handler says about ``exc``; return that text."""
        text = dialog_error_text(exc)
        self.status_label.setText(text)
        self.fit_height()
        return text

    def _task_message(self, text: str) -> None:
        self.last_message = text
        self.status_label.setText(text)

    def fit_height(self) -> None:
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
        self.fit_height()

    def cancel_or_close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.status_label.setText("Cancelling…")
        else:
            self.close()

    # -- closing ------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel running tasks and remove preview files (plugin unload, dialog destruction)."""
        cancel_task(self.task, "run")
        self.preview.shutdown()
        self._estimate_timer.stop()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        if self.task is None and self.preview.task is None:
            self.preview.clear_files()
        super().closeEvent(event)
