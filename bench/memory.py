"""Peak memory (RSS high-water mark) of the tiled GeoTIFF path for rasters of growing size.

Each size runs `mlin_qgis.core.pipeline.superresolve` in a fresh interpreter (`python -m
bench.memory INPUT OUTPUT SCALE MODEL`), which prints its own VmHWM, so one run's arenas and caches
never leak into the next. Tiling bounds the working set by the tile and the decoder chunk, so the
peak must not grow with the raster (the bench asks for within 15 %): a whole-image buffer anywhere
on the path would show up as growth.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FLAT_TOLERANCE = 0.15


def rss_high_water_kib() -> int:
    """This process's peak resident set size in KiB (VmHWM; ru_maxrss where /proc is absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def rss_now_kib() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return rss_high_water_kib()


def write_raster(path: Path, size: int, texture: np.ndarray) -> Path:
    """A georeferenced uint8 RGB GeoTIFF of size x size, the bench image mirrored to fill it."""
    from osgeo import gdal, osr

    gdal.UseExceptions()
    tile = np.round(np.clip(texture, 0, 1) * 255).astype(np.uint8)
    reps = -(-size // tile.shape[1])
    mirrored = np.concatenate([tile, tile[:, ::-1]], axis=1)
    mirrored = np.concatenate([mirrored, mirrored[:, :, ::-1]], axis=2)
    full = np.tile(mirrored, (1, reps, reps))[:, :size, :size]
    ds = gdal.GetDriverByName("GTiff").Create(str(path), size, size, 3, gdal.GDT_Byte,
                                              ["TILED=YES", "COMPRESS=DEFLATE", "PHOTOMETRIC=RGB"])
    ds.SetGeoTransform((400000.0, 0.3, 0.0, 3300000.0, 0.0, -0.3))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32617)
    ds.SetProjection(srs.ExportToWkt())
    for i in range(3):
        ds.GetRasterBand(i + 1).WriteArray(full[i])
    ds.FlushCache()
    ds = None
    return path


@dataclass
class MemoryResult:
    size: int
    scale: float
    out_size: tuple[int, int]
    tiles: int
    peak_mib: float
    base_mib: float
    seconds: float
    provider: str


def measure(input_path: Path, output_path: Path, scale: float, model: str, size: int,
            timeout: float | None = None) -> MemoryResult:
    """Run one super-resolution in a fresh interpreter and read back its peak RSS."""
    cmd = [sys.executable, "-m", "bench.memory", str(input_path), str(output_path), repr(scale), model]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"memory run failed for {size}x{size}: {done.stderr.strip()[-800:]}")
    info = json.loads(done.stdout.strip().splitlines()[-1])
    return MemoryResult(size, scale, tuple(info["out_size"]), info["tiles"], info["peak_kib"] / 1024,
                        info["base_kib"] / 1024, info["seconds"], info["provider"])


def is_flat(results: list[MemoryResult], tolerance: float = FLAT_TOLERANCE) -> tuple[bool, float]:
    """Whether the largest peak is within `tolerance` of the smallest; returns (ok, growth)."""
    peaks = [r.peak_mib for r in results]
    growth = max(peaks) / min(peaks) - 1.0
    return growth <= tolerance, growth


def _child(argv: list[str]) -> int:
    """`python -m bench.memory INPUT OUTPUT SCALE MODEL`: one run, then one JSON line on stdout."""
    from mlin_qgis.core.pipeline import SuperResolveRequest, superresolve

    input_path, output_path, scale, model = argv[0], argv[1], float(argv[2]), argv[3]
    base = rss_now_kib()
    t0 = time.perf_counter()
    result = superresolve(SuperResolveRequest(input_path=input_path, output_path=output_path, scale=scale,
                                              model=model))
    seconds = time.perf_counter() - t0
    print(json.dumps({"peak_kib": rss_high_water_kib(), "base_kib": base, "seconds": seconds,
                      "out_size": [result.height, result.width], "tiles": getattr(result, "tiles", -1),
                      "provider": result.provider}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(sys.argv[1:]))
