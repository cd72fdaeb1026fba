"""Super-resolution on a Dask cluster: ``sr --cluster local[:N] | tcp://HOST:PORT`` and ``batch``.

The driver (this process) plans the run exactly as the single-process path does (plan_run: the same
statistics, tiles and georeferencing), groups the tiles into blocks (blocks.py), submits one Dask task
per block that is not already finished in the parts folder (cluster_worker.py), records each finished
part in the manifest as it arrives, and assembles the final GeoTIFF when all are done. Workers read the
input themselves through GDAL (a path every worker can read: a shared filesystem, or /vsicurl/, /vsis3/
... unchanged), keep one model per process and give onnxruntime their share of the host's cores.

The flow is one way: a caller builds a :class:`ClusterRequest` (what to compute and where) and
:func:`superresolve_cluster` hands back a :class:`ClusterResult` or raises an MlinError; nothing here
calls back up. ``batch`` shares one :class:`ClusterSession` across files through
:func:`superresolve_on_cluster`. Dask is imported only by cluster_session.py, and only when a session
starts.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import raster_io
from .blocks import (
    DEFAULT_BLOCK_PX,
    MIN_AUTO_BLOCK_PX,
    Block,
    Manifest,
    assemble,
    check_block_px,
    open_manifest,
    parts_folder,
    plan_blocks,
    run_parameters,
)
from .cluster_session import ClusterConfig, ClusterSession
from .cluster_worker import BlockFailure, client_error, run_block
from .engine import Engine, open_engine
from .errors import ConfigError, MlinCancelled
from .fidelity_report import FidelityReport
from .inputs import check_scale
from .outputs import check_free_space, estimate_bytes
from .request import CancelFn, ProgressFn, SuperResolveRequest
from .run_plan import RunPlan, plan_run

__all__ = ["ClusterConfig", "ClusterRequest", "ClusterResult", "ClusterSession", "superresolve_cluster",
           "superresolve_on_cluster"]

log = logging.getLogger(__name__)

POLL_S = 0.25  # how often the driver checks for a cancel while blocks run
IN_FLIGHT_PER_THREAD = 2  # blocks submitted ahead per worker thread (see _run_blocks)


@dataclass(frozen=True)
class ClusterRequest:
    """One cluster run as a caller asks for it: the request (as for the single-process path) and where
    its blocks run."""

    request: SuperResolveRequest
    config: ClusterConfig = field(default_factory=ClusterConfig)


@dataclass
class ClusterResult:
    """What a cluster run made, where and how (the CLI and Processing report it)."""

    output_path: Path
    width: int
    height: int
    scale_x: float
    scale_y: float
    blocks: int
    reused: int
    computed: int
    seconds: float
    mpx_per_s: float
    model: str
    workers: str
    warnings: list[str] = field(default_factory=list)
    provider: str = "Dask"  # where it ran, in words (the Processing algorithm's PROVIDER output)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: plan, blocks, assemble
    block_px: int = 0
    route: str = ""  # what `auto` picked and why
    fidelity: FidelityReport | None = None  # area average of the output vs the input



def superresolve_cluster(job: ClusterRequest, progress: ProgressFn | None = None,
                         is_cancelled: CancelFn | None = None,
                         say: Callable[[str], None] | None = None) -> ClusterResult:
    """The cluster's entry for one run: open a session for ``job.config``, run ``job.request``'s blocks
    and assemble the output (see :func:`superresolve_on_cluster` for what it raises)."""
    with ClusterSession(job.config) as session:
        return superresolve_on_cluster(job.request, session, progress=progress, is_cancelled=is_cancelled,
                                       say=say)


def superresolve_on_cluster(request: SuperResolveRequest, session: ClusterSession,
                            progress: ProgressFn | None = None, is_cancelled: CancelFn | None = None,
                            say: Callable[[str], None] | None = None) -> ClusterResult:
    """Run one request's blocks on ``session``'s cluster and assemble the output.

    Raises MlinError (bad input, a block that failed for a data reason: its window is named) or
    MlinCancelled; in both cases the finished parts stay in the parts folder for a resume, and no final
    file is written. ``say`` gets one-line reports (blocks reused, cluster, ...)."""
    start = time.perf_counter()
    say = say or log.info
    config = session.config
    check_scale(request.scale)
    chosen_px = None if config.block_px is None else check_block_px(config.block_px)
    if request.weights_map_path:
        raise ConfigError("the weights map is written by the single-process path only; leave it out with a "
                          "cluster, or run without the cluster to get it.")
    source = str(request.input_path)
    src = raster_io.open_raster(source)
    plan, engine = plan_run(request, src, lambda spec: open_engine(spec, device="cpu", threads=1,
                                                                precision=request.precision))
    folder = parts_folder(plan.output_path)
    block_px = chosen_px or _automatic_block_px(plan, folder, config.restart, session.total_threads())
    blocks = plan_blocks(plan.tiles, block_px)
    parameters = run_parameters(plan, source, engine.files, engine.card, block_px, request.precision)
    manifest = open_manifest(folder, parameters, len(blocks), config.restart)
    out_h, out_w = plan.window_size
    todo = [b for b in blocks if b.index not in manifest.parts]
    reused = len(blocks) - len(todo)
    parts_bytes = estimate_bytes(out_w, out_h, len(plan.bands.output_bands), plan.info.dtype.itemsize)
    check_free_space(folder, int(parts_bytes * len(todo) / max(1, len(blocks))), "parts of the blocks still to compute")
    say(f"blocks: {len(blocks)} of up to {block_px} px, {reused} reused from {folder}, {len(todo)} to compute")
    if not session.announced:
        say(f"cluster: {session.describe()}")
        session.announced = True

    def check_cancel() -> None:
        if is_cancelled is not None and is_cancelled():
            raise MlinCancelled(f"cancelled: {len(manifest.parts)} of {len(blocks)} blocks are finished and kept in "
                                f"{folder}; rerun the same command to resume.")

    planned = time.perf_counter()
    _run_blocks(plan, todo, source, folder, engine, request, session, manifest, len(blocks), progress, check_cancel)
    check_cancel()
    computed = time.perf_counter()
    report = assemble(plan, engine.card, manifest, blocks,
                      None if progress is None else (lambda f, m: progress(1.0, m)))
    shutil.rmtree(folder, ignore_errors=True)
    seconds = time.perf_counter() - start
    timings = {"plan": planned - start, "blocks": computed - planned, "assemble": start + seconds - computed}
    sx, sy = plan.scale_xy
    return ClusterResult(plan.output_path, out_w, out_h, sx, sy, len(blocks), reused, len(todo), seconds,
                         out_w * out_h / 1e6 / max(seconds, 1e-9), f"{engine.card.name} {engine.card.version}",
                         session.describe(), list(plan.warnings), f"Dask cluster: {session.describe()}", timings, block_px,
                         plan.route, report)


def _automatic_block_px(plan: RunPlan, folder: Path, restart: bool, threads: int) -> int:
    earlier = None if restart else Manifest.load(folder)
    if earlier is not None and earlier.parameters.get("block_size"):
        return int(earlier.parameters["block_size"])  # resume the earlier layout, whatever the cluster now
    block_px = DEFAULT_BLOCK_PX
    while block_px > MIN_AUTO_BLOCK_PX and len(plan_blocks(plan.tiles, block_px)) < 2 * max(1, threads):
        block_px //= 2
    return block_px


def _run_blocks(plan: RunPlan, todo: list[Block], source: str, folder: Path, engine: Engine,
                request: SuperResolveRequest, session: ClusterSession, manifest: Any, total: int,
                progress: ProgressFn | None, check_cancel: Callable[[], None]) -> None:
    """Submit the blocks, record each finished part at once, stop everything on a failure or cancel."""
    client = session.client
    lean_plan = dataclasses.replace(plan, tiles=())  # each task carries only its own block's tiles
    hosts = session.threads_by_host()
    key = manifest.parameters["model_sha256"][:8] + manifest.parameters["input"][-16:].replace("/", "_")
    queue = list(todo)
    futures: dict[Any, Block] = {}
    # At most IN_FLIGHT_PER_THREAD blocks per worker thread are submitted at a time: the workers stay busy,
    # and a cancel stops the run after a bounded number of further blocks instead of racing all of them.
    limit = max(2, IN_FLIGHT_PER_THREAD * session.total_threads())

    def top_up() -> None:
        while queue and len(pending) < limit:
            block = queue.pop(0)
            future = client.submit(run_block, lean_plan, block, source, str(folder), engine.model_spec, request.device,
                                   hosts, request.threads, request.precision,
                                   key=f"mlin-block-{key}-{block.index}-{time.time_ns()}", priority=-block.index,
                                   pure=False)
            futures[future] = block
            pending.add(future)

    pending: set[Any] = set()
    top_up()
    if progress:
        progress(len(manifest.parts) / total, f"{len(manifest.parts)}/{total} blocks")
    try:
        while pending:
            check_cancel()
            done = {f for f in pending if f.done()}
            if not done:
                time.sleep(POLL_S)
                continue
            pending -= done
            for future in sorted(done, key=lambda f: futures[f].index):
                block = futures[future]
                try:  # waits again if the result was lost with a dying worker and is being recomputed
                    record = future.result()
                except (Exception, asyncio.CancelledError) as error:  # e.g. KilledWorker: it killed 3 workers
                    raise client_error(block, error, len(manifest.parts), folder) from None
                if isinstance(record, BlockFailure):
                    raise client_error(block, record, len(manifest.parts), folder)
                manifest.parts[block.index] = record
                manifest.save()
                if progress:
                    progress(len(manifest.parts) / total, f"{len(manifest.parts)}/{total} blocks")
            check_cancel()
            top_up()
    except KeyboardInterrupt:
        raise MlinCancelled(f"interrupted: {len(manifest.parts)} of {total} blocks are finished and kept in {folder}; "
                            "rerun the same command to resume.") from None
    finally:
        if pending:
            client.cancel(list(pending), force=True)
