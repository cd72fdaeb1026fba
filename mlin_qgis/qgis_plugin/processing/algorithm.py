"""What every ``mlin`` Processing algorithm shares: its listing (id, name, group, tags, icon), a fresh
instance per run and the one way a failure leaves ``processAlgorithm`` (through ``processing_exception``)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from qgis.core import QgsProcessingAlgorithm, QgsProcessingContext, QgsProcessingFeedback
from qgis.PyQt.QtGui import QIcon

from ..common import icon
from .errors import processing_exception


class MlinAlgorithm(QgsProcessingAlgorithm):
    """Base of the ``mlin:*`` algorithms: a subclass sets the listing below and implements :meth:`_process`."""

    ALGORITHM_ID = ""  # the ``<name>`` of ``mlin:<name>``
    DISPLAY_NAME = ""
    GROUP = ""
    GROUP_ID = ""
    TAGS: Tuple[str, ...] = ()

    def name(self) -> str:
        return self.ALGORITHM_ID

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.DISPLAY_NAME

    def group(self) -> str:
        return self.GROUP

    def groupId(self) -> str:  # noqa: N802 - QGIS API
        return self.GROUP_ID

    def tags(self) -> List[str]:
        return list(self.TAGS)

    def icon(self) -> QIcon:
        return icon()

    def createInstance(self) -> "MlinAlgorithm":  # noqa: N802 - QGIS API
        return type(self)()

    def processAlgorithm(  # noqa: N802 - QGIS API
        self, parameters: Dict[str, Any], context: QgsProcessingContext, feedback: Optional[QgsProcessingFeedback]
    ) -> Dict[str, Any]:
        """Every failure leaves through processing_exception (processing/errors.py), the one mapping."""
        try:
            return self._process(parameters, context, feedback or QgsProcessingFeedback())
        except Exception as exc:  # noqa: BLE001 - mapped, never swallowed
            raise processing_exception(exc) from None

    def _process(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                 feedback: QgsProcessingFeedback) -> Dict[str, Any]:
        """The algorithm's own work; each subclass implements it (QGIS's sip metaclass rules out abc)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _process")
