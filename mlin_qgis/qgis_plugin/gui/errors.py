"""The one place where the zoom dialog turns an exception into the text it shows.

The run and preview tasks (in their worker threads), the estimate and the dialog's own actions all
call :func:`dialog_error_text`: a :class:`MlinError` keeps its message (complete sentences written
for the user), a cancel says that nothing was written, anything else becomes one line pointing at
the logged traceback.
"""
from __future__ import annotations

from mlin_qgis.core.errors import MlinCancelled, MlinError

from ..errors import unexpected_error_line

CANCELLED_TEXT = "Cancelled; no output was written."


def dialog_error_text(exc: BaseException) -> str:
    """What the dialog says about ``exc`` (status or estimate label, or a preview's info line)."""
    if isinstance(exc, MlinCancelled):
        return CANCELLED_TEXT
    if isinstance(exc, MlinError):
        return str(exc)
    return unexpected_error_line(exc, "zoom dialog")
