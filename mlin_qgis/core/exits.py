"""How a command-line run ends: the one place that turns an exception into one line and an exit code.

``python -m mlin_qgis`` (every sub-command, ``mlin_qgis/__main__.py``), ``sr`` and ``batch`` end through
:func:`exit_code`. Exit codes: 0 done, 1 a bug (the traceback goes to a log file, see :func:`log_dir`,
and the line names it), 2 a user error (:class:`MlinError`: bad input, option, model, data) or a missing
optional package, 130 cancelled (Ctrl-C or :class:`MlinCancelled`). A user never sees a bare traceback.
"""
from __future__ import annotations

import datetime
import os
import platform
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable

from .errors import CheckpointError, ConfigError, DataError, MlinCancelled, MlinError, ModelCardError, RasterError
from .version import __version__

EXIT_OK, EXIT_BUG, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 130
ENV_LOG_DIR = "MLIN_LOG_DIR"

# MlinError subclasses, most specific first: (class, exit code, how the line starts).
USER_ERRORS: tuple[tuple[type[MlinError], int, str], ...] = (
    (MlinCancelled, EXIT_CANCELLED, ""),  # its message already says what was kept or removed
    (ConfigError, EXIT_BAD_INPUT, "error: "),
    (CheckpointError, EXIT_BAD_INPUT, "error: "),
    (DataError, EXIT_BAD_INPUT, "error: "),
    (ModelCardError, EXIT_BAD_INPUT, "error: "),
    (RasterError, EXIT_BAD_INPUT, "error: "),
    (MlinError, EXIT_BAD_INPUT, "error: "),
)
# Optional packages a sub-command may need (a ModuleNotFoundError naming one is the user's to fix).
OPTIONAL_PACKAGES = {"torch": "ml", "onnx": "ml", "yaml": "ml", "tqdm": "ml", "PIL": "ml", "skimage": "ml",
                     "dask": "cluster", "distributed": "cluster", "onnxruntime": "", "osgeo": ""}


def log_dir() -> Path:
    """Where crash logs go: $MLIN_LOG_DIR, else the user's cache folder (``mlin_qgis/logs``)."""
    if os.environ.get(ENV_LOG_DIR):
        return Path(os.environ[ENV_LOG_DIR]).expanduser()
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mlin_qgis" / "logs"


def write_crash_log(exc: BaseException, command: str) -> Path | None:
    """The traceback of ``exc`` (with the command line and versions) in a new log file, or None when no
    folder (log_dir(), then the temporary folder) can take it."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = (f"mlin {command} {__version__}, Python {platform.python_version()} on {platform.platform()}\n"
            f"command line: {' '.join(sys.argv)}\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    for folder in (log_dir(), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"mlin-{command}-{stamp}-{os.getpid()}.log"
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def exit_code(exc: BaseException, say: Callable[[str], None], command: str,
              interrupted: str = "interrupted.") -> int:
    """Say in one line why the run stopped (``say`` prints it) and return the exit code."""
    if isinstance(exc, KeyboardInterrupt):
        say(interrupted)
        return EXIT_CANCELLED
    for kind, code, prefix in USER_ERRORS:
        if isinstance(exc, kind):
            say(f"{prefix}{exc}")
            return code
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in OPTIONAL_PACKAGES:
        extra = OPTIONAL_PACKAGES[(exc.name or "").split(".")[0]]
        hint = f" (pip install -e '.[{extra}]' from a checkout)" if extra else ""
        say(f"error: `{command}` needs the Python package {exc.name}, which is not installed here; install it{hint}.")
        return EXIT_BAD_INPUT
    path = write_crash_log(exc, command)
    where = f"the traceback is in {path}; please report it with that file" if path else \
        "no log file could be written (set MLIN_LOG_DIR to a writable folder); please report it"
    what = "out of memory" if isinstance(exc, MemoryError) else "internal error"
    say(f"{what} ({type(exc).__name__}: {_short(exc)}); {where}.")
    return EXIT_BUG


def run_guarded(work: Callable[[], int], command: str, say: Callable[[str], None] | None = None) -> int:
    """``work()``'s exit code, or the one :func:`exit_code` gives for what it raised (SystemExit, as
    argparse raises it, passes through)."""
    speak = say or (lambda message: print(f"mlin {command}: {message}", file=sys.stderr, flush=True))
    try:
        return int(work())
    except (Exception, KeyboardInterrupt) as exc:
        return exit_code(exc, speak, command)
