"""User-facing errors of the core: every message names the problem and what to do about it."""
from __future__ import annotations


class MlinError(Exception):
    """A failure the user can act on (bad input, unusable model, no disk space, ...).

    Callers (CLI, Processing algorithm, dialog) show ``str(error)`` as is, so messages must be
    complete sentences that say what went wrong and what to do.
    """


class MlinCancelled(MlinError):
    """The user cancelled a run; its partial output has already been removed.

    A subclass of :class:`MlinError` so that a generic handler still shows a sensible message, but
    callers that care (the CLI's exit code 130) catch it first.
    """
