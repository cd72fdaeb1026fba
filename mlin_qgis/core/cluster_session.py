"""A Dask client for a cluster run: a LocalCluster it starts (and stops) or a running scheduler.

Dask is optional: it is imported only here, only when a session starts. Inside QGIS only a running
scheduler's address is accepted (no local cluster is spawned from QGIS's embedded Python). The
session checks, before the first block, that there are workers and that they run this mlin-qgis.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

log = logging.getLogger(__name__)

INSTALL_HINT = "python -m pip install \"dask[distributed]\""


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


def worker_versions() -> str:
    """mlin-qgis's version on a worker, or what it lacks to run blocks."""
    from .version import __version__

    try:
        import onnxruntime  # noqa: F401
        from osgeo import gdal  # noqa: F401
    except ImportError as exc:
        return f"{__version__} without {exc.name}"
    return __version__

