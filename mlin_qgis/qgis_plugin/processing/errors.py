"""The one place where the Processing algorithms turn an exception into what Processing shows.

Every failure of ``mlin:superresolve`` and ``mlin:exportonnx`` leaves ``processAlgorithm`` through
:func:`processing_exception`: a :class:`MlinError` (bad input, model, raster, missing package: the
user can act on it) keeps its message, a cancel says so, anything else becomes one line pointing at
the logged traceback (qgis_process and the Processing log then show that line, not a traceback).
"""
from __future__ import annotations

from qgis.core import QgsProcessingException

from mlin_qgis.core.errors import MlinCancelled, MlinError

from ..errors import unexpected_error_line


def processing_exception(exc: BaseException) -> QgsProcessingException:
    """The QgsProcessingException to raise for ``exc`` (raise it ``from None``: the message says it all)."""
    if isinstance(exc, QgsProcessingException):
        return exc
    if isinstance(exc, MlinCancelled):
        text = str(exc) or "cancelled by the user; no output was written."
        return QgsProcessingException(text[:1].upper() + text[1:])
    if isinstance(exc, MlinError):
        return QgsProcessingException(str(exc))
    return QgsProcessingException(unexpected_error_line(exc, "Processing algorithm"))
