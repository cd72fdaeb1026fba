"""`python -m bench cluster`: output Mpx/s of the same raster at x2 on one machine, three ways, side by side.

Rows: the single-process path (2 threads), the cluster path on 1 worker x 2 threads, and on 2 workers x 1
thread (LocalCluster, started before the clock; its start-up is reported on its own). The overhead column
compares each cluster row's wall time with the single-process row of the same run: it is what the block
path costs (planning, parts written and read back, the assembly) when there is nothing to gain from
spreading. Default raster: 2000 x 2000 px of the shipped sample (tiled from resources/OSBS_029.tif),
the default model. About 20 minutes on 2 cores at the default size; `--size 1000` takes about 5.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from osgeo import gdal

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "resources" / "OSBS_029.tif"


def write_raster(path: Path, size: int) -> Path:
    """A size x size RGB GeoTIFF made by tiling the shipped sample (mirrored, so no seams)."""
    src = gdal.Open(str(SAMPLE))
    tile = src.ReadAsArray()
    tile = np.concatenate([tile, tile[:, :, ::-1]], axis=2)  # mirrored left-right ...
    tile = np.concatenate([tile, tile[:, ::-1]], axis=1)  # ... and top-bottom: a seamless 2x tile
    reps = (1, -(-size // tile.shape[1]), -(-size // tile.shape[2]))
    data = np.tile(tile, reps)[:, :size, :size]
    gt = list(src.GetGeoTransform())
    ds = gdal.GetDriverByName("GTiff").Create(str(path), size, size, 3, gdal.GDT_Byte,
                                              ["TILED=YES", "COMPRESS=DEFLATE", "PHOTOMETRIC=RGB"])
    ds.SetGeoTransform(gt)
    ds.SetProjection(src.GetProjection())
    ds.WriteArray(data)
    ds = None
    return path


def _peak_rss_mib() -> float:
    """A worker process's peak resident memory (VmHWM), for the table."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench cluster", description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2000, help="raster side in px (default 2000)")
    p.add_argument("--scale", type=float, default=2.0)
    p.add_argument("--block-size", type=int, default=None, help="cluster block side in output px (default 2048)")
    p.add_argument("--model", default=None, help="model (default: the shipped default)")
    args = p.parse_args(argv)

    import distributed

    from mlin_qgis.core.cluster import ClusterConfig, ClusterSession, superresolve_on_cluster
    from mlin_qgis.core.pipeline import SuperResolveRequest, superresolve

    block = args.block_size
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlin-bench-cluster-") as tmp:
        src = write_raster(Path(tmp) / "in.tif", args.size)
        log(f"bench cluster: {args.size}x{args.size} at x{args.scale:g}, block {block or 'automatic'} px")
        t = time.perf_counter()
        single = superresolve(SuperResolveRequest(src, Path(tmp) / "single.tif", args.scale, model=args.model, threads=2))
        base = time.perf_counter() - t
        rows.append(("single process, 2 threads", base, single.width * single.height, "", ""))
        log(f"  single: {base:.1f} s")
        reference = gdal.Open(str(single.output_path)).ReadAsArray().astype(np.int16)
        for workers, threads in ((1, 2), (2, 1)):
            t = time.perf_counter()
            lc = distributed.LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                                          dashboard_address=":0", silence_logs=40)
            startup = time.perf_counter() - t
            config = ClusterConfig(address=lc.scheduler_address, block_px=block)
            out = Path(tmp) / f"cluster_{workers}x{threads}.tif"
            with lc, ClusterSession(config) as session:
                t = time.perf_counter()
                result = superresolve_on_cluster(SuperResolveRequest(src, out, args.scale, model=args.model), session)
                wall = time.perf_counter() - t
                peaks = session.client.run(_peak_rss_mib)
            diff = int(np.abs(gdal.Open(str(out)).ReadAsArray().astype(np.int16) - reference).max())
            timing = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
            timing += f"; worker peak RSS {max(peaks.values()):.0f} MiB"
            rows.append((f"cluster, {workers} worker(s) x {threads} thread(s), {result.blocks} blocks of "
                         f"{result.block_px} px", wall,
                         result.width * result.height, f"{startup:.1f}", f"{timing}; max |diff| {diff} DN"))
            log(f"  {workers}x{threads}: {wall:.1f} s ({timing})")
            out.unlink()
    lines = ["## mlin-qgis bench cluster", "",
             f"- {args.size}x{args.size} px RGB uint8 at x{args.scale:g} (output {rows[0][2] / 1e6:.1f} Mpx), "
             f"model {single.model}, block {block or 'automatic'} px, {os.cpu_count()} cores, {platform.processor() or platform.machine()}",
             "- one run, side by side; cluster start-up (LocalCluster) is outside the wall time and shown apart", "",
             "| path | wall s | output Mpx/s | vs single | cluster start s | split, check |",
             "|---|---|---|---|---|---|"]
    for name, wall, px, startup, note in rows:
        lines.append(f"| {name} | {wall:.1f} | {px / 1e6 / wall:.4f} | {100 * (wall / base - 1):+.1f} % | "
                     f"{startup or '-'} | {note or '-'} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
