"""The QGIS plugin object: toolbar button, Raster menu entry and the ``mlin`` Processing provider.

Loading stays cheap and safe: no onnxruntime, numpy model code or torch is imported here; a missing
onnxruntime produces one message and the plugin keeps working as far as it can (the dialog and the
algorithm explain what to install when used).
"""
from __future__ import annotations

from typing import Any, Optional

from qgis.core import QgsApplication
from qgis.PyQt.QtWidgets import QAction

from . import dependencies
from . import log as qgis_log
from .common import icon
from .gui.install_prompt import warn_if_onnxruntime_missing
from .processing.provider import MlinProvider

MENU = "&MLIN Super-Resolution"
ACTION_TEXT = "MLIN Super-Resolution…"


class MlinPlugin:
    """Created by :func:`mlin_qgis.classFactory`; QGIS drives it through initGui/initProcessing/unload."""

    def __init__(self, iface: Optional[Any]) -> None:
        self.iface = iface  # None under qgis_process, which only calls initProcessing
        self.provider: Optional[MlinProvider] = None
        self.action: Optional[QAction] = None
        self.dialog: Optional[Any] = None
        self.onnxruntime_missing = False

    # -- Processing (desktop and qgis_process) ------------------------------------------------------
    def initProcessing(self) -> None:  # noqa: N802 - QGIS API
        """Register the provider once (QGIS desktop reaches here through initGui, qgis_process directly)."""
        if self.provider is None:
            dependencies.activate_deps_dir()  # what a one-click install put in the plugin's own folder
            qgis_log.install()
            self.provider = MlinProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    # -- desktop ------------------------------------------------------------------------------------
    def initGui(self) -> None:  # noqa: N802 - QGIS API
        """Toolbar button and Raster menu entry that open the zoom dialog; the provider; one dependency check."""
        self.initProcessing()
        if self.iface is None:
            return
        self.action = QAction(icon(), ACTION_TEXT, self.iface.mainWindow())
        self.action.setObjectName("mlinSuperResolutionAction")
        self.action.setToolTip("Super-resolve a raster layer at any real scale (MLIN)")
        self.action.triggered.connect(self.open_dialog)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToRasterMenu(MENU, self.action)
        self.onnxruntime_missing = warn_if_onnxruntime_missing(self.iface)

    def open_dialog(self) -> None:
        """Show the zoom dialog (created on first use, so plugin load does not build it)."""
        from .gui.zoom_dialog import ZoomDialog

        if self.dialog is None:
            parent = self.iface.mainWindow() if self.iface is not None else None
            self.dialog = ZoomDialog(iface=self.iface, parent=parent)
        else:
            self.dialog.select_active_layer()
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()

    def unload(self) -> None:
        """Remove everything initGui/initProcessing added, so a reload starts clean."""
        if self.action is not None and self.iface is not None:
            self.iface.removePluginRasterMenu(MENU, self.action)
            self.iface.removeToolBarIcon(self.action)
            self.action.triggered.disconnect(self.open_dialog)
            self.action.deleteLater()
        self.action = None
        if self.dialog is not None:
            self.dialog.shutdown()
            self.dialog.deleteLater()
            self.dialog = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)  # also deletes it
            self.provider = None
        qgis_log.uninstall()
