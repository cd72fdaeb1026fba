"""The zoom dialog's size and time estimate, a label that never blocks the GUI thread.

``pipeline.estimate`` is quick once this machine's speed for a model is known, but the first time it
makes a timed calibration run (core/calibration.py: onnxruntime sessions and an encode/decode, seconds
for a large model). So the first estimate per model in a QGIS session runs as an :class:`EstimateTask`
in a worker thread and :class:`EstimateLabel` shows its result when it ends; once one has finished,
the calibration is cached in memory and later estimates for that model are made directly (milliseconds).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Set

from qgis.core import QgsApplication, QgsTask
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QLabel, QWidget

from .errors import dialog_error_text

log = logging.getLogger(__name__)

# Models (their spec as the dialog passes it; "" for the default) whose estimate has run once in this
# process: calibration.throughput has them in memory, so estimating again never calibrates.
_calibrated: Set[str] = set()


@dataclass(frozen=True)
class EstimateArgs:
    """Everything an estimate depends on (equal arguments give the same estimate)."""

    input_path: str
    scale: float
    model: Optional[str]
    ensemble: int
    all_bands: bool
    extent: Optional[Sequence[float]]

    def run(self) -> Any:
        """``pipeline.estimate`` for these arguments (may calibrate: seconds, the first time)."""
        from mlin_qgis.core import pipeline

        return pipeline.estimate(self.input_path, self.scale, self.model, ensemble=self.ensemble,
                                 all_bands=self.all_bands, extent=self.extent)


def is_calibrated(model: Optional[str]) -> bool:
    """Whether an estimate for ``model`` has finished in this session (so the next one is quick)."""
    return (model or "") in _calibrated


class EstimateTask(QgsTask):
    """``pipeline.estimate`` in a worker thread; ``done(ok)`` in the main thread (``estimate`` or ``error``)."""

    done = pyqtSignal(bool)

    def __init__(self, args: EstimateArgs) -> None:
        super().__init__("MLIN: measuring this computer's speed", QgsTask.Flags())
        self.args = args
        self.estimate: Optional[Any] = None
        self.error = ""

    def run(self) -> bool:
        """Worker thread: no GUI; every failure becomes ``self.error`` (the dialog's text for it)."""
        try:
            self.estimate = self.args.run()
            return True
        except Exception as exc:  # noqa: BLE001 - mapped by the dialog's one handler, never lost
            self.error = dialog_error_text(exc)
            return False

    def finished(self, ok: bool) -> None:  # noqa: D401 - QGIS API
        if ok:
            _calibrated.add(self.args.model or "")
        self.done.emit(ok)


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


def estimate_text(est: Any, passes: int, card: Optional[Any], scale: float) -> str:
    """The label's text: output size, file size and time, plus a warning above the recommended zoom."""
    text = (f"Output {est.width} × {est.height} px · about {human_bytes(est.bytes)} · "
            f"about {human_seconds(est.seconds)}" + (" (8 passes)" if passes > 1 else ""))
    if card is not None and scale > card.recommended_max_scale:
        text += (f"<br><span style='color:#a05a00'>Above ×{card.recommended_max_scale:g}, the largest zoom "
                 f"recommended for {card.name}: expect softer detail.</span>")
    return text


MEASURING = "Estimating: measuring how fast this computer runs the model (once per session)…"


class EstimateLabel(QLabel):
    """Shows the estimate for the latest :meth:`request`; ``ready(ok)`` when it is shown (False: an error)."""

    ready = pyqtSignal(bool)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("estimateLabel")
        self.setWordWrap(True)
        self.task: Optional[EstimateTask] = None  # at most one: a second calibration would skew the first
        self.wanted: Optional[EstimateArgs] = None
        self.card: Optional[Any] = None

    def request(self, args: EstimateArgs, card: Optional[Any]) -> None:
        """Estimate ``args`` now when the model's speed is known, else in the background."""
        self.wanted, self.card = args, card
        if is_calibrated(args.model):
            try:
                self._show(args.run())
            except Exception as exc:  # noqa: BLE001 - shown through the dialog's one handler
                self._show(None, dialog_error_text(exc))
            return
        self.setToolTip("")
        self.setText(MEASURING)
        if self.task is None:
            self.task = EstimateTask(args)
            self.task.done.connect(self._task_done)
            QgsApplication.taskManager().addTask(self.task)

    def cancel(self) -> None:
        """Forget what was asked: a text set by the dialog (no layer, a web layer) stays."""
        self.wanted = None

    def _task_done(self, ok: bool) -> None:
        task, self.task = self.task, None
        if task is None or self.wanted is None:
            return
        if self.wanted != task.args:  # the settings changed while it ran: now the model's speed is known
            self.request(self.wanted, self.card)
        elif ok:
            self._show(task.estimate)
        else:
            self._show(None, task.error)

    def _show(self, est: Optional[Any], error: str = "") -> None:
        if est is None:
            self.setToolTip("")
            self.setText(error)
            self.ready.emit(False)
            return
        self.setToolTip(f"Time estimated from {est.basis}")
        self.setText(estimate_text(est, self.wanted.ensemble if self.wanted else 1, self.card,
                                   self.wanted.scale if self.wanted else 0.0))
        self.ready.emit(True)
