"""The one error hierarchy of mlin-qgis: every message names the problem and what to do about it.

Callers (CLI, Processing algorithm, dialog) show ``str(error)`` as is, so messages are complete
sentences. The CLI maps them in one place (``core/exits.py``): a user error prints one line and exits 2,
a bug (any other exception) prints one line naming a log file that holds its traceback and exits 1.
The subclasses say which part of a request
was wrong; those that replace a built-in error keep it as a base, so ``except ValueError`` around
configuration code still works."""
from __future__ import annotations


class MlinError(Exception):
    """A failure the user can act on (bad input, unusable model, no disk space, ...)."""


class ConfigError(MlinError, ValueError):
    """An option, configuration file or registry name that is not valid."""


class CheckpointError(MlinError, ValueError):
    """A checkpoint that is missing, unreadable, unsafe or of a kind we do not know."""


class DataError(MlinError, ValueError):
    """Training or evaluation images that are missing, unreadable or unusable."""


class ModelCardError(MlinError, ValueError):
    """A model whose card (the JSON inside its ONNX files) is missing or invalid."""


class RasterError(MlinError):
    """A raster that cannot be read or written as asked."""


class MlinCancelled(MlinError):
    """The user cancelled a run; its partial output has already been removed.

    A subclass of :class:`MlinError` so that a generic handler still shows a sensible message, but
    callers that care (the CLI's exit code 130) catch it first."""
