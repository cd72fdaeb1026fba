"""The one-click install of onnxruntime, as a cancellable QgsTask whose pip log goes to the "MLIN" tab.

Runs only after the user said yes (the message bar's "Install now…" asks, showing the command and the
folder). pip installs into the plugin's own folder (``dependencies.deps_dir``), never into QGIS's
or the system's site-packages, with numpy pinned to the version already loaded; the folder is then
added to ``sys.path`` (and again at every plugin load).
"""
from __future__ import annotations

import subprocess
from typing import List, Optional

from qgis.core import Qgis, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .. import dependencies


class InstallTask(QgsTask):
    """``pip install --target`` in a worker thread; ``done(ok, text)`` in the main thread."""

    done = pyqtSignal(bool, str)

    def __init__(self, args: Optional[List[str]] = None) -> None:
        super().__init__("MLIN: installing onnxruntime", QgsTask.CanCancel)
        self.args = args or dependencies.one_click_install_args()
        self.log: List[str] = []
        self.returncode: Optional[int] = None

    def run(self) -> bool:
        QgsMessageLog.logMessage("running: " + " ".join(self.args), dependencies.MESSAGE_TAG, Qgis.Info)
        try:
            proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        except OSError as exc:
            self.log.append(f"cannot start {self.args[0]}: {exc}")
            return False
        assert proc.stdout is not None
        for line in proc.stdout:
            self.log.append(line.rstrip())
            QgsMessageLog.logMessage(line.rstrip(), dependencies.MESSAGE_TAG, Qgis.Info)
            if self.isCanceled():
                proc.kill()
                break
        self.returncode = proc.wait()
        return self.returncode == 0 and not self.isCanceled()

    def finished(self, ok: bool) -> None:  # noqa: D401 - QGIS API
        if ok:
            dependencies.activate_deps_dir()
            ready = dependencies.onnxruntime_available()
            text = (f"Installed into {self.args[self.args.index('--target') + 1]}. "
                    + ("onnxruntime is ready." if ready else "Restart QGIS to use it."))
        elif self.isCanceled():
            text = "The installation was cancelled; nothing was changed in QGIS's own Python."
        else:
            tail = "\n".join(self.log[-8:])
            text = f"The installation failed (pip exit code {self.returncode}); the MLIN log has pip's output:\n{tail}"
        QgsMessageLog.logMessage(text, dependencies.MESSAGE_TAG, Qgis.Success if ok else Qgis.Warning)
        self.done.emit(ok, text)
