"""What the QGIS entry points say about a failure that is not the user's: one line that names the
exception and points at its traceback (the "MLIN" tab of QGIS's Log Messages panel, and a log file).

The entry points' own handlers (``processing/errors.py`` for the algorithms, ``gui/errors.py`` for the
dialog) map :class:`~mlin_qgis.core.errors.MlinError` themselves and call :func:`unexpected_error_line`
for everything else, so a bug never reaches the user as a bare traceback.
"""
from __future__ import annotations

import logging

from mlin_qgis.core.exits import write_crash_log

log = logging.getLogger(__name__)

LOG_TAB = "the MLIN tab of QGIS's Log Messages panel"


def short_text(exc: BaseException, limit: int = 200) -> str:
    """The exception's message on one line, cut to ``limit`` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def unexpected_error_line(exc: BaseException, entry: str) -> str:
    """Log the traceback (to the MLIN log tab and a crash-log file) and return one line for the user."""
    log.error("unexpected error in the %s", entry, exc_info=(type(exc), exc, exc.__traceback__))
    path = write_crash_log(exc, f"qgis-{entry.replace(' ', '-')}")
    where = f"{LOG_TAB} and {path}" if path is not None else LOG_TAB
    what = "Out of memory" if isinstance(exc, MemoryError) else "Unexpected error"
    return f"{what} ({type(exc).__name__}: {short_text(exc)}); the traceback is in {where}; please report it."
