"""The missing-onnxruntime prompt: one message-bar item at plugin start, with "How to install…" (the
command, selectable) and "Install now…" (asks first, then runs :class:`InstallTask`).

GUI only; whether onnxruntime is there, and the commands, come from ``dependencies`` (plain Python).
Without a main window (qgis_process) only the message log gets the text; the algorithm itself raises
the same text when run.
"""
from __future__ import annotations

import logging
from typing import Any, List, Optional

from qgis.core import Qgis, QgsApplication, QgsMessageLog
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QMessageBox, QPushButton

from .. import dependencies
from .install_task import InstallTask

log = logging.getLogger(__name__)

_install_tasks: List[InstallTask] = []  # keeps running install tasks referenced until they end


def warn_if_onnxruntime_missing(iface: Optional[Any]) -> bool:
    """Show ONE message when onnxruntime is missing; return True if it was missing."""
    if dependencies.onnxruntime_available():
        return False
    text = dependencies.onnxruntime_install_text()
    QgsMessageLog.logMessage(text, dependencies.MESSAGE_TAG, Qgis.Warning)
    if iface is None:
        return True
    bar = iface.messageBar()
    item = bar.createMessage(dependencies.MESSAGE_TAG,
                             "onnxruntime is not installed in QGIS's Python: the plugin cannot run models yet.")
    button = QPushButton("How to install…", item)

    def show_details() -> None:
        install_details_box(text, iface.mainWindow()).exec_()

    button.clicked.connect(show_details)
    item.layout().addWidget(button)
    install = QPushButton("Install now…", item)
    install.setToolTip(f"Runs pip for you (after asking) into {dependencies.deps_dir()}, which the plugin adds "
                       "to its path")
    install.clicked.connect(lambda: ask_and_install(iface, bar, item))
    item.layout().addWidget(install)
    bar.pushWidget(item, Qgis.Warning, 0)
    return True


def ask_and_install(iface: Any, bar: Any = None, item: Any = None) -> Optional[InstallTask]:
    """Ask for consent (showing the exact command and folder), then run the install as a QgsTask."""
    args = dependencies.one_click_install_args()
    gpu = "an NVIDIA GPU was found, so this installs onnxruntime-gpu" if "onnxruntime-gpu" in args else \
        "no NVIDIA GPU was found, so this installs the CPU onnxruntime"
    question = (f"Install onnxruntime for MLIN now? ({gpu})\n\nThis runs:\n    {' '.join(args)}\n\n"
                f"Packages go to {dependencies.deps_dir()} only (not into QGIS's or the system's Python); numpy "
                "is pinned to the version QGIS uses. The output appears in the Log Messages panel under MLIN.")
    parent = iface.mainWindow() if iface is not None else None
    if QMessageBox.question(parent, "MLIN: install onnxruntime", question) != QMessageBox.Yes:
        return None
    task = InstallTask(args)
    _install_tasks.append(task)

    def report(ok: bool, text: str) -> None:
        _install_tasks.remove(task)
        log.info("onnxruntime install %s", "done" if ok else "failed or cancelled")
        if bar is not None:
            if item is not None and ok:
                bar.popWidget(item)
            bar.pushMessage(dependencies.MESSAGE_TAG, text.splitlines()[0], Qgis.Success if ok else Qgis.Critical, 0)

    task.done.connect(report)
    QgsApplication.taskManager().addTask(task)
    return task


def install_details_box(text: str, parent: Any = None) -> QMessageBox:
    """A message box whose text (the install command) can be selected and copied."""
    box = QMessageBox(QMessageBox.Warning, "MLIN: onnxruntime missing", text, QMessageBox.Ok, parent)
    box.setTextInteractionFlags(Qt.TextSelectableByMouse)
    return box
