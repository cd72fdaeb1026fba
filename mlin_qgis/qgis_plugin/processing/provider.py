"""The ``mlin`` Processing provider: makes the algorithms visible to the toolbox, models and qgis_process."""
from __future__ import annotations

from typing import List

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..common import icon, resource_path


class MlinProvider(QgsProcessingProvider):
    """Provider id ``mlin``; algorithm ids are ``mlin:<name>``."""

    def id(self) -> str:
        return "mlin"

    def name(self) -> str:
        return "MLIN super-resolution"

    def longName(self) -> str:  # noqa: N802 - QGIS API
        from mlin_qgis.core.version import __version__

        return f"MLIN super-resolution {__version__}"

    def icon(self) -> QIcon:
        return icon()

    def svgIconPath(self) -> str:  # noqa: N802 - QGIS API
        return str(resource_path("icon.svg"))

    def supportedOutputRasterLayerExtensions(self) -> List[str]:  # noqa: N802 - QGIS API
        # The core writes GeoTIFF (optionally cloud-optimised); offering other formats would lie.
        return ["tif"]

    def loadAlgorithms(self) -> None:  # noqa: N802 - QGIS API
        # Imported here so that loading the plugin does not pay for them until Processing asks.
        from .exportonnx_algorithm import ExportOnnxAlgorithm
        from .superresolve_algorithm import SuperResolveAlgorithm

        self.addAlgorithm(SuperResolveAlgorithm())
        self.addAlgorithm(ExportOnnxAlgorithm())
