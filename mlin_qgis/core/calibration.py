"""How fast this machine runs a model: a tiny timed run, cached, behind every time estimate.

A fixed guess of the throughput was wrong by 4-18x across machines, so the estimate is made from a
measurement instead: encode a 64x64 LR image and decode a 96x96 output window (well under a second
on a CPU), which gives seconds per LR pixel (encoder) and per output pixel (decoder). A run costs
``band groups x passes x (LR pixels read, halos included, x encoder cost + output pixels x decoder
cost)``. Results are cached per model file, provider and thread count, in memory and in a small
JSON file (``$MLIN_CACHE_DIR`` or the user's cache folder), so QGIS sessions reuse them. A real run
records its own speed here too (:func:`record_run`), which later estimates in the process prefer.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .engine import CPU, CUDA, SuperResolver, cuda_offered
from .models import DECODER_FILE, ENCODER_FILE, resolve_model

log = logging.getLogger(__name__)

CALIBRATION_LR = 64  # LR pixels per side of the timed encode
CALIBRATION_OUT = 96  # output pixels per side of the timed decode (at x1.5)
CALIBRATION_REPEATS = 1  # timed rounds after the same-shape warm-up; the best counts (~0.3 s each on 2 cores)
MAX_AGE_S = 7 * 24 * 3600  # a cached calibration older than this is measured again (drivers, load, hardware)
ENV_CACHE_DIR = "MLIN_CACHE_DIR"


@dataclass(frozen=True)
class Throughput:
    """Measured cost of one model on one provider: seconds per encoded LR pixel and per decoded output pixel."""

    provider: str
    threads: int
    encoder_s_per_px: float
    decoder_s_per_px: float
    measured_at: float  # time.time() of the measurement

    def seconds(self, lr_px_read: float, out_px: float, passes: int = 1) -> float:
        return passes * (lr_px_read * self.encoder_s_per_px + out_px * self.decoder_s_per_px)

    def mpx_per_s(self, scale: float) -> float:
        """Output Mpx/s of one pass at ``scale`` (halo overhead left out): a number to show users."""
        per_out_px = self.encoder_s_per_px / (scale * scale) + self.decoder_s_per_px
        return 1e-6 / per_out_px


_memory: dict[str, Throughput] = {}
_providers: dict[tuple[str, str, int | None], str] = {}  # (model, device, threads) -> provider that ran
_measured: dict[tuple[str, str], float] = {}  # (model spec, provider) -> output Mpx/s of the last real run


def record_run(model_spec: str, provider: str, mpx_per_s: float) -> None:
    """Remember a finished run's speed (output Mpx/s per band group and pass) for later estimates."""
    _measured[(model_spec, provider)] = mpx_per_s


def measured_throughput(model: str | os.PathLike, provider: str) -> float | None:
    """Output Mpx/s (per band group) of the last run in this process with that model (its folder, or
    FOLDER@variant, FOLDER#code=...: what the engine calls its ``model_spec``) and provider."""
    return _measured.get((str(model), provider))


def cache_file() -> Path:
    root = os.environ.get(ENV_CACHE_DIR) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "mlin-qgis")
    return Path(root) / "calibration.json"


def _key(model_dir: Path, provider: str, threads: int) -> str:
    stamp = "-".join(f"{(model_dir / f).stat().st_size}:{int((model_dir / f).stat().st_mtime)}"
                     for f in (ENCODER_FILE, DECODER_FILE))
    return f"{model_dir.resolve()}|{stamp}|{provider}|{threads}"


def _read_cache() -> dict[str, dict]:
    try:
        return json.loads(cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_cache(key: str, value: Throughput) -> None:
    path = cache_file()
    data = _read_cache()
    data[key] = asdict(value)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # a read-only home only costs a re-measurement next session
        log.info("calibration cache not written (%s)", exc)


def measure(engine: SuperResolver, repeats: int = CALIBRATION_REPEATS) -> Throughput:
    """Time an encode and a decode on a smooth synthetic image: a warm-up at the same shapes, then the
    best of ``repeats`` (a single timing once cached a 2x-slow figure measured while the machine was busy)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:CALIBRATION_LR, 0:CALIBRATION_LR] / CALIBRATION_LR
    image = np.stack([0.5 + 0.3 * np.sin(6 * xx + k) * np.cos(5 * yy) for k in range(3)]).astype(np.float32)
    image += rng.normal(0, 0.02, image.shape).astype(np.float32)
    size = (CALIBRATION_LR, CALIBRATION_LR)
    out = (int(CALIBRATION_LR * 1.5), int(CALIBRATION_LR * 1.5))
    rows, cols = (0, CALIBRATION_OUT), (0, CALIBRATION_OUT)
    enc, dec = float("inf"), float("inf")
    for k in range(repeats + 1):  # k == 0 warms up
        t0 = time.perf_counter()
        proj = engine.encode_bound(image)
        t1 = time.perf_counter()
        engine.decode_window(proj, (0, 0), size, out, rows, cols)
        t2 = time.perf_counter()
        if k:
            enc, dec = min(enc, t1 - t0), min(dec, t2 - t1)
    return Throughput(provider=engine.provider, threads=int(engine.config.threads or os.cpu_count() or 1),
                      encoder_s_per_px=enc / (CALIBRATION_LR * CALIBRATION_LR),
                      decoder_s_per_px=dec / (CALIBRATION_OUT * CALIBRATION_OUT), measured_at=time.time())


def throughput(model: str | os.PathLike | None = None, device: str = "auto", threads: int | None = None,
               refresh: bool = False) -> Throughput:
    """This machine's throughput for a model and device: from the cache, else measured (and cached)."""
    model_dir = resolve_model(model)
    which = (str(model_dir), device, threads)
    # The provider a run would get: remembered from a session made here, else what onnxruntime offers
    # (so a cached calibration is found without opening a session: `sr` pays nothing for its estimate).
    provider = _providers.get(which) or (CUDA if device != "cpu" and cuda_offered() else CPU)
    n_threads = int(threads or os.cpu_count() or 1)
    key = _key(model_dir, provider, n_threads)
    if not refresh:
        if key in _memory:
            return _memory[key]
        cached = _read_cache().get(key)
        if cached and time.time() - float(cached.get("measured_at", 0)) < MAX_AGE_S:
            _memory[key] = Throughput(**cached)
            return _memory[key]
    engine = SuperResolver(model_dir, device=device, threads=threads)
    _providers[which] = engine.provider
    if engine.provider != provider:  # offered but not working (e.g. CUDA without its libraries)
        key = _key(model_dir, engine.provider, n_threads)
        if not refresh and key in _memory:
            return _memory[key]
    value = measure(engine)
    log.info("calibrated %s on %s: %.3g us/LR px (encoder), %.3g us/output px (decoder)", model_dir.name,
             value.provider, value.encoder_s_per_px * 1e6, value.decoder_s_per_px * 1e6)
    _memory[key] = value
    _write_cache(key, value)
    return value
