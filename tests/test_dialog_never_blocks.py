"""The zoom dialog never blocks the GUI thread on the time estimate's calibration (a timed inference run
the first time a model is estimated in a session): it runs in a QgsTask and the label follows when it ends.

Real QGIS, a real dialog and the real task manager; only the calibration is replaced by a stand-in that
sleeps 2 s before doing the real one, standing for a slow machine or a large model."""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any, List

import numpy as np
import pytest

from conftest import smooth_image, write_geotiff

pytest_plugins = ["qgis_fixtures"]

SLEEP_S = 2.0
TIMER_MS = 50
DEADLINE_S = 0.5


@pytest.mark.qgis
def test_a_slow_calibration_never_blocks_the_dialog(qgis_app: Any, tiny_models_dir: Path, project: Any,
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from qgis.core import QgsRasterLayer
    from qgis.PyQt.QtCore import QTimer

    from mlin_qgis.core import calibration, pipeline
    from mlin_qgis.core.engine import cuda_offered
    from mlin_qgis.qgis_plugin.common import shipped_models
    from mlin_qgis.qgis_plugin.gui import estimate
    from mlin_qgis.qgis_plugin.gui.zoom_dialog import ZoomDialog
    from qgis_fixtures import wait_until

    real = calibration.throughput
    calls: List[tuple] = []  # (start time, thread) of every calibration that measured

    def slow_throughput(model: Any = None, *args: Any, **kwargs: Any) -> Any:
        """Like the real one: slow the first time for a model, then remembered (here: 2 s, then instant)."""
        if str(model) not in {key for key, _, _ in calls}:
            calls.append((str(model), time.monotonic(), threading.current_thread()))
            time.sleep(SLEEP_S)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(calibration, "throughput", slow_throughput)
    home = sys.modules[pipeline.estimate.__module__]  # where estimate lives (it may import throughput by name)
    if getattr(home, "throughput", None) is real:
        monkeypatch.setattr(home, "throughput", slow_throughput)
    monkeypatch.setattr(estimate, "_calibrated", set())  # no model estimated yet in this "session"
    path = write_geotiff(tmp_path / "field.tif", (smooth_image(40, 40, 3, seed=4) * 255).round().astype(np.uint8))
    layer = QgsRasterLayer(str(path), "Field", "gdal")
    project.addMapLayer(layer)
    shipped_models(), cuda_offered()  # what the dialog reads once per session, read before the clock starts

    def timer_fires_in_time(action: Any) -> float:
        """Seconds between arming a 50 ms timer and its firing, with ``action`` run in between."""
        fired: List[float] = []
        start = time.monotonic()
        QTimer.singleShot(TIMER_MS, lambda: fired.append(time.monotonic()))
        action()
        assert wait_until(lambda: bool(fired), 10), "the timer never fired"
        return fired[0] - start

    dialogs: List[Any] = []

    def open_dialog() -> None:
        dlg = ZoomDialog(iface=None)
        dlg.model_combo.setCurrentIndex(dlg.model_combo.findText("tiny-test"))
        dlg.layer_combo.setLayer(layer)
        dlg.show()
        dlg.update_estimate()
        dialogs.append(dlg)

    try:
        waited = timer_fires_in_time(open_dialog)
        dlg = dialogs[0]
        assert calls, "opening the dialog starts a calibration"
        assert waited < DEADLINE_S, f"opening the dialog blocked the GUI thread for {waited:.2f} s"
        assert time.monotonic() < calls[0][1] + SLEEP_S, "the timer fired while the calibration slept"
        assert "measuring" in dlg.estimate_label.text()

        def change_scale() -> None:
            dlg.set_scale(3.0)
            dlg.update_estimate()

        waited = timer_fires_in_time(change_scale)
        assert waited < DEADLINE_S, f"changing the scale blocked the GUI thread for {waited:.2f} s"
        assert time.monotonic() < calls[-1][1] + SLEEP_S, "the timer fired while a calibration slept"
        assert all(thread is not threading.main_thread() for _, _, thread in calls), "calibration ran on the GUI thread"

        assert wait_until(lambda: dlg.estimate_label.task is None and "Output" in dlg.estimate_label.text(), 120), \
            dlg.estimate_label.text()
        assert dlg.estimate_label.text().startswith("Output 120 × 120 px"), "the label shows the latest settings"
        assert estimate.is_calibrated(dlg.model_path())
        dlg.set_scale(2.0)
        dlg.update_estimate()  # this model's speed is known now: estimated at once, no new calibration task
        assert dlg.estimate_label.task is None and dlg.estimate_label.text().startswith("Output 80 × 80 px")
        assert all(thread is not threading.main_thread() for _, _, thread in calls)
    finally:
        for dlg in dialogs:
            dlg.shutdown()
            wait_until(lambda d=dlg: d.estimate_label.task is None, 120)
            dlg.deleteLater()
