"""What runs on a cluster's worker (:func:`run_block`) and how its failures come back to the client.

A block that fails for a reason the user can act on (an unreadable window, a bad model ...) comes back
as a :class:`BlockFailure` that keeps its MlinError subclass and message; anything else (a worker
killed for memory, a lost connection) arrives as the exception Dask re-raises. :func:`client_error` is
the one place where either becomes the client's error: the same MlinError subclass as a single-process
run would raise, in one line, naming the block and the finished parts kept for a resume.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from . import raster_io
from .blocks import Block, PartRecord, compute_block
from .engine import Engine, open_engine
from .errors import MlinError
from .run_plan import RunPlan

# One engine per worker process and (model, device, threads, precision), loaded by its first block.
_engines: dict[tuple[str, str, int, str], Engine] = {}
_engines_lock = threading.Lock()


def _threads_here(threads_by_host: dict[str, int], requested: int | None) -> int:
    if requested:
        return int(requested)
    try:
        from distributed import get_worker

        worker = get_worker()
        host = worker.address.split("://", 1)[-1].rsplit(":", 1)[0]
        share = threads_by_host.get(host) or int(worker.state.nthreads)
    except (ImportError, ValueError, AttributeError):
        share = 1
    return max(1, (os.cpu_count() or 1) // max(1, share))



def worker_engine(model_dir: str, device: str, threads: int, precision: str = "fp32") -> Engine:
    """One engine per worker process and (model, device, threads, precision): loaded by the first block
    only (a lock, so two threads of one worker do not both load it)."""
    key = (model_dir, device, threads, precision)
    with _engines_lock:
        if key not in _engines:
            _engines[key] = open_engine(model_dir, device=device, threads=threads, precision=precision)
        return _engines[key]


@dataclass(frozen=True)
class BlockFailure:
    """A block that failed for a reason the user can act on (returned, not raised, so that workers do
    not log a traceback for what is a data problem; :func:`client_error` turns it into the error)."""

    message: str
    kind: type[MlinError] = MlinError  # the worker's error class, raised again as such at the client


def run_block(plan: RunPlan, block: Block, source: str, folder: str, model_dir: str, device: str,
              threads_by_host: dict[str, int], threads: int | None, precision: str = "fp32") -> PartRecord | BlockFailure:
    """The Dask task: open the input here, compute one block, return its part's record."""
    try:
        engine = worker_engine(model_dir, device, _threads_here(threads_by_host, threads), precision)
        src = raster_io.open_raster(source)
        return compute_block(src, plan, engine, block, Path(folder))
    except MlinError as exc:
        return BlockFailure(str(exc), type(exc))


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def client_error(block: Block, outcome: BlockFailure | BaseException, kept: int, folder: Path) -> MlinError:
    """The client's error for a block that failed on the cluster: a :class:`BlockFailure` keeps its class
    and message; any other exception (e.g. KilledWorker after it killed 3 workers) is named in one line.
    Either way the message says that the ``kept`` finished blocks stay in ``folder`` for a resume."""
    if isinstance(outcome, BlockFailure):  # a data reason (unreadable window, ...), its block named
        return outcome.kind(f"{outcome.message} The {kept} finished block(s) are kept in {folder}; fix the "
                            "input and rerun the same command to resume.")
    return MlinError(f"{block.describe()} failed on the cluster ({type(outcome).__name__}: "
                     f"{_one_line(str(outcome))}); the {kept} finished block(s) are kept in {folder}; rerun the "
                     "same command to resume (workers killed repeatedly often lack memory: use a smaller "
                     "--block-size).")
