"""Background run of the core pipeline for the zoom dialog, as a cancellable QgsTask.

QGIS's task manager runs :meth:`SuperResolveTask.run` in a worker thread (so the UI stays live and
the task shows in the status bar) and :meth:`finished` back in the main thread, which is the only
place allowed to touch the project.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

from qgis.core import QgsProject, QgsRasterLayer, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .. import dependencies
from .errors import CANCELLED_TEXT, dialog_error_text

log = logging.getLogger(__name__)


def cancel_task(task: Optional[QgsTask], what: str) -> None:
    """Cancel ``task`` if there is one; one the task manager has already deleted is let go (logged as ``what``)."""
    if task is not None:
        try:
            task.cancel()
        except RuntimeError:  # already deleted by the task manager
            log.debug("%s task already gone", what)


class SuperResolveTask(QgsTask):
    """Runs ``pipeline.superresolve(request)``; on success adds the output layer to ``project``."""

    # Emitted from the worker thread; Qt queues it to the dialog's thread.
    message = pyqtSignal(str)
    # Emitted in the main thread when everything is done: (success, text for the user).
    done = pyqtSignal(bool, str)

    def __init__(self, request: Any, layer_name: str, project: Optional[QgsProject] = None,
                 add_to_project: bool = True, description: str = "", read_layer: Optional[tuple] = None) -> None:
        """``read_layer``: (layer clone, area or None, resolution or None) of a layer that is not a file,
        read into a temporary GeoTIFF at the start of :meth:`run` (see layer_source.py)."""
        super().__init__(description or f"MLIN super-resolution ×{request.scale:g}", QgsTask.CanCancel)
        self.request = request
        self.layer_name = layer_name
        self.project = project or QgsProject.instance()
        self.add_to_project = add_to_project  # False for the dialog's preview runs
        self.result: Optional[Any] = None
        self.error: Optional[str] = None
        self.cancelled_by_user = False
        self.layer: Optional[QgsRasterLayer] = None
        self.read_layer = read_layer

    def _progress(self, fraction: float, text: str = "") -> None:
        self.setProgress(100.0 * max(0.0, min(1.0, float(fraction))))
        if text:
            self.message.emit(text)

    def run(self) -> bool:
        """Worker thread: no GUI, no project access; every failure becomes ``self.error``."""
        from mlin_qgis.core import pipeline  # onnxruntime is imported lazily by the engine, never here
        from mlin_qgis.core.errors import MlinCancelled

        if not dependencies.onnxruntime_available():
            self.error = dependencies.onnxruntime_install_text()
            return False
        source = None
        try:
            if self.read_layer is not None:
                from ..layer_source import layer_source

                layer, area, resolution = self.read_layer
                self.message.emit(f"Reading layer '{layer.name()}' through QGIS…")
                source = layer_source(layer, area, resolution)
                self.request.input_path, self.request.extent = source.path, source.extent
            self.result = pipeline.superresolve(self.request, progress=self._progress, is_cancelled=self.isCanceled)
            return True
        except MlinCancelled:
            self.cancelled_by_user = True
            return False
        except Exception as exc:  # noqa: BLE001 - a bug must reach the user and the log, not kill the thread
            self.error = dialog_error_text(exc)  # the dialog's one handler (logs the traceback of a bug)
            return False
        finally:
            if source is not None:
                source.cleanup()

    def finished(self, ok: bool) -> None:  # noqa: D401 - QGIS API
        """Main thread: load the result, or report why there is none."""
        picked = ""
        if ok and self.result is not None and getattr(self.result, "route", ""):
            picked = " Model: " + self.result.route.split(" (input looks: ")[0] + "."
        if ok and self.result is not None and not self.add_to_project:
            self.done.emit(True, f"Preview ready ({self.result.seconds:.1f} s, {self.result.provider}).{picked}")
            return
        if ok and self.result is not None:
            layer = QgsRasterLayer(str(self.result.output_path), self.layer_name, "gdal")
            if layer.isValid():
                self.project.addMapLayer(layer)
                self.layer = layer
                r = self.result
                fidelity = f" Fidelity (output averaged back - input): {r.fidelity.describe()}." \
                    if getattr(r, "fidelity", None) is not None else ""
                self.done.emit(True, f"Done: {r.width} × {r.height} px in {r.seconds:.1f} s "
                                     f"({r.mpx_per_s:.2g} Mpx/s, {r.provider}). Added layer '{self.layer_name}'."
                                     f"{picked}{fidelity}")
                return
            self.error = f"The output {self.result.output_path} was written but QGIS cannot open it."
        if self.cancelled_by_user or (self.isCanceled() and not self.error):
            self.done.emit(False, CANCELLED_TEXT)
        else:
            self.done.emit(False, self.error or "The task was stopped.")
