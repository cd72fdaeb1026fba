"""Route the core's `mlin_qgis` logger to QGIS's message log panel, tab "MLIN" (QGIS glue only)."""
from __future__ import annotations

import logging

from qgis.core import Qgis, QgsMessageLog

TAG = "MLIN"
# Every module logs under its own __name__ (mlin_qgis.core.pipeline, ...); the handler sits on their
# common parent, the package's logger, so it sees them all.
PACKAGE_LOGGER = __name__.split(".")[0]
_LEVELS = ((logging.ERROR, Qgis.Critical), (logging.WARNING, Qgis.Warning), (logging.NOTSET, Qgis.Info))


class QgisLogHandler(logging.Handler):
    """One log record -> one QgsMessageLog line under the MLIN tab."""

    def emit(self, record: logging.LogRecord) -> None:
        level = next(q for threshold, q in _LEVELS if record.levelno >= threshold)
        try:
            QgsMessageLog.logMessage(self.format(record), TAG, level)
        except Exception:  # logging must never break a run
            self.handleError(record)


def install() -> QgisLogHandler:
    """Attach a handler to the `mlin_qgis` logger once (a plugin reload reuses it)."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    for handler in logger.handlers:
        if isinstance(handler, QgisLogHandler):
            return handler
    handler = QgisLogHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


def uninstall() -> None:
    logger = logging.getLogger(PACKAGE_LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, QgisLogHandler)]:
        logger.removeHandler(handler)
