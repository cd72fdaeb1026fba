"""Super-resolution on a Dask cluster: ``sr --cluster local[:N] | tcp://HOST:PORT`` and ``batch``.

The driver (this process) plans the run exactly as the single-process path does (plan_run: the same
statistics, tiles and georeferencing), groups the tiles into blocks (blocks.py), submits one Dask task
per block that is not already finished in the parts folder, records each finished part in the manifest
as it arrives, and assembles the final GeoTIFF when all are done. Workers read the input themselves
through GDAL (a path every worker can read: a shared filesystem, or /vsicurl/, /vsis3/ ... unchanged),
keep one model per process and give onnxruntime their share of the host's cores.

Dask is optional: it is imported only here, only when a cluster is asked for. Inside QGIS only a
running scheduler's address is accepted (no local cluster is spawned from QGIS's embedded Python).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import threading
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
    PartRecord,
    assemble,
    check_block_px,
    compute_block,
    open_manifest,
    parts_folder,
    plan_blocks,
    run_parameters,
)
from .engine import Engine, open_engine
from .errors import ConfigError, MlinCancelled, MlinError
from .fidelity_report import FidelityReport
from .inputs import check_scale
from .outputs import check_free_space, estimate_bytes
from .request import CancelFn, ProgressFn, SuperResolveRequest
from .run_plan import RunPlan, plan_run

log = logging.getLogger(__name__)

INSTALL_HINT = "python -m pip install \"dask[distributed]\""
POLL_S = 0.25  # how often the driver checks for a cancel while blocks run
IN_FLIGHT_PER_THREAD = 2  # blocks submitted ahead per worker thread (see _run_blocks)


def import_distributed() -> Any:
    """The ``distributed`` module, or ConfigError with the install command."""
    try:
        import distributed
    except ImportError:
        raise ConfigError("running on a cluster needs Dask distributed, which is not installed in this Python; "
                          f"install it with {INSTALL_HINT}, or leave the cluster option empty to run here.") from None
    return distributed


@dataclass
class ClusterConfig:
    """Where and how blocks run. ``address``: ``local`` (a LocalCluster of one worker per core),
    ``local:N`` (N worker processes x 1 thread) or a running scheduler (``tcp://HOST:PORT``)."""

    address: str = "local"
    # None: DEFAULT_BLOCK_PX, halved (not below MIN_AUTO_BLOCK_PX) until every worker thread has two
    # blocks, so a raster smaller than a few blocks still spreads; a resume keeps its parts' block size.
    block_px: int | None = None
    restart: bool = False  # discard an earlier run's parts instead of resuming them
    connect_timeout_s: float = 5.0
    allow_local: bool = True  # False inside QGIS: never spawn worker processes from an embedded Python


def parse_local(address: str) -> int | None:
    """N of ``local:N`` (None for plain ``local``); ConfigError for anything else starting with local."""
    text = address.strip().lower()
    if text == "local":
        return None
    try:
        n = int(text.split(":", 1)[1])
    except (IndexError, ValueError):
        n = 0
    if n < 1:
        raise ConfigError(f"cluster {address!r}: use local, local:N with N >= 1 worker processes, or a "
                          "scheduler address such as tcp://10.0.0.5:8786.")
    return n


class ClusterSession:
    """A Dask client for the run's lifetime: a LocalCluster it starts (and stops), or a connection to a
    running scheduler (left running). ``with ClusterSession(config) as session: session.client``."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.client: Any = None
        self.cluster: Any = None
        self.announced = False  # the cluster line is printed once per session (a batch runs many files)

    @property
    def is_local(self) -> bool:
        return self.config.address.strip().lower().startswith("local")

    def __enter__(self) -> "ClusterSession":
        try:
            self._start()
            self._check_workers()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _check_workers(self) -> None:
        """At least one worker, and every worker runs this mlin-qgis version (a clear error now beats a
        deserialisation traceback from the first task)."""
        from .version import __version__

        try:
            self.client.wait_for_workers(1, timeout=self.config.connect_timeout_s)
        except (OSError, TimeoutError):
            raise ConfigError(f"the Dask scheduler at {self.config.address} has no workers (waited "
                              f"{self.config.connect_timeout_s:g} s); start some with `dask worker "
                              f"{self.config.address}` on each machine.") from None
        try:
            versions = self.client.run(worker_versions)
        except Exception as exc:  # a worker that cannot import mlin_qgis cannot even load the probe
            raise ConfigError(f"the cluster's workers cannot run mlin-qgis ({type(exc).__name__}: {exc}); install "
                              f"mlin-qgis {__version__} with onnxruntime and GDAL in the workers' Python (e.g. pip "
                              "install -e '.[cluster]' from this checkout), or start them with PYTHONPATH set to "
                              "the folder that holds mlin_qgis.") from None
        wrong = {addr: v for addr, v in versions.items() if v != __version__}
        if wrong:
            listed = ", ".join(f"{addr}: {v}" for addr, v in sorted(wrong.items()))
            raise ConfigError(f"{len(wrong)} worker(s) run another mlin-qgis than this {__version__} ({listed}); "
                              "install the same version on every worker so that blocks match.")

    def _start(self) -> None:
        distributed = import_distributed()
        logging.getLogger("distributed").setLevel(logging.ERROR)
        address = self.config.address.strip()
        if self.is_local:
            if not self.config.allow_local:
                raise ConfigError("a local cluster cannot be started from here (QGIS's embedded Python); start a "
                                  "scheduler and workers outside QGIS (dask scheduler; dask worker tcp://HOST:8786) "
                                  "and give its address, or leave the cluster empty to run here.")
            n = parse_local(address) or (os.cpu_count() or 1)
            self.cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                    dashboard_address=":0", silence_logs=logging.ERROR)
            self.client = distributed.Client(self.cluster)
        else:
            if "://" not in address:
                raise ConfigError(f"cluster {address!r} is not a scheduler address; give it as tcp://HOST:PORT "
                                  "(dask scheduler prints it), or local / local:N.")
            try:
                self.client = distributed.Client(address, timeout=f"{self.config.connect_timeout_s}s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise ConfigError(f"cannot reach the Dask scheduler at {address} within "
                                  f"{self.config.connect_timeout_s:g} s ({type(exc).__name__}: {exc}); check that "
                                  "`dask scheduler` runs there and the port is open, or use --cluster local.") from None

    def __exit__(self, *exc: object) -> None:
        for thing in (self.client, self.cluster):
            if thing is not None:
                try:
                    thing.close()
                except Exception as err:  # closing must not hide the run's own error
                    log.debug("closing %s: %s", thing, err)
        self.client = self.cluster = None

    def workers(self) -> dict[str, dict[str, Any]]:
        return dict(self.client.scheduler_info().get("workers", {}))

    def describe(self) -> str:
        """'2 workers x 1 thread (local cluster), dashboard http://...' for the log line."""
        workers = self.workers()
        threads = sorted({int(w.get("nthreads", 1)) for w in workers.values()}) or [0]
        hosts = len({w.get("host") for w in workers.values()})
        where = "local cluster" if self.is_local else f"scheduler {self.config.address}, {hosts} host(s)"
        text = f"{len(workers)} worker(s) x {'/'.join(map(str, threads))} thread(s) ({where})"
        link = getattr(self.client, "dashboard_link", None)
        return text + (f", dashboard {link}" if link and self._has_dashboard() else "")

    def _has_dashboard(self) -> bool:
        try:
            import bokeh  # noqa: F401 - the dashboard exists only with bokeh installed
        except ImportError:
            return False
        return True

    def total_threads(self) -> int:
        return sum(int(w.get("nthreads", 1)) for w in self.workers().values())

    def threads_by_host(self) -> dict[str, int]:
        """Worker threads per host: each worker's onnxruntime gets cores // that."""
        counts: dict[str, int] = {}
        for w in self.workers().values():
            counts[str(w.get("host"))] = counts.get(str(w.get("host")), 0) + int(w.get("nthreads", 1))
        return counts


# -- what runs on a worker ----------------------------------------------------------------------
def worker_versions() -> str:
    """mlin-qgis's version on a worker, or what it lacks to run blocks."""
    from .version import __version__

    try:
        import onnxruntime  # noqa: F401
        from osgeo import gdal  # noqa: F401
    except ImportError as exc:
        return f"{__version__} without {exc.name}"
    return __version__


_engines: dict[tuple[str, str, int, str], Engine] = {}


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


_engines_lock = threading.Lock()


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
    not log a traceback for what is a data problem; the driver turns it into an MlinError)."""

    message: str


def run_block(plan: RunPlan, block: Block, source: str, folder: str, model_dir: str, device: str,
              threads_by_host: dict[str, int], threads: int | None, precision: str = "fp32") -> PartRecord | BlockFailure:
    """The Dask task: open the input here, compute one block, return its part's record."""
    try:
        engine = worker_engine(model_dir, device, _threads_here(threads_by_host, threads), precision)
        src = raster_io.open_raster(source)
        return compute_block(src, plan, engine, block, Path(folder))
    except MlinError as exc:
        return BlockFailure(str(exc))


# -- the driver ---------------------------------------------------------------------------------
@dataclass
class ClusterResult:
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
                    raise MlinError(f"{block.describe()} failed on the cluster ({type(error).__name__}: {error}); "
                                    f"the {len(manifest.parts)} finished block(s) are kept in {folder}; rerun the "
                                    "same command to resume (workers killed repeatedly often lack memory: "
                                    "use a smaller --block-size).") from None
                if isinstance(record, BlockFailure):  # a data reason (unreadable window, ...), block named
                    raise MlinError(f"{record.message} The {len(manifest.parts)} finished block(s) are kept in "
                                    f"{folder}; fix the input and rerun the same command to resume.")
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
