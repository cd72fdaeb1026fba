"""gui/task.py ``cancel_task``: the one way the dialog and its preview cancel a task on shutdown."""
from __future__ import annotations

import logging

import pytest

pytest.importorskip("qgis.core")

from mlin_qgis.qgis_plugin.gui.task import cancel_task  # noqa: E402


class _Task:
    def __init__(self, deleted: bool = False) -> None:
        self.deleted = deleted
        self.cancelled = False

    def cancel(self) -> None:
        if self.deleted:
            raise RuntimeError("wrapped C/C++ object of type QgsTask has been deleted")
        self.cancelled = True


def test_no_task_is_nothing_to_do() -> None:
    cancel_task(None, "run")


def test_a_live_task_is_cancelled() -> None:
    task = _Task()
    cancel_task(task, "run")  # type: ignore[arg-type]
    assert task.cancelled


def test_a_task_the_manager_deleted_is_let_go(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="mlin_qgis.qgis_plugin.gui.task"):
        cancel_task(_Task(deleted=True), "preview")  # type: ignore[arg-type]
    assert "preview task already gone" in caplog.text
