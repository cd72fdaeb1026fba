"""`python -m bench fidelity`: the runtime cost of `sr --fidelity`, side by side with a default run.

Same raster, model, tiles and threads; each pair is run alternately (best of ``--repeat``), so a busy
machine slows both alike. The cost is the extra LR pixels each tile decodes (reach + 1 per side,
core/fidelity.py; 1 at integer scales), the banded solves and the report (every output has that).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _raster(path: Path, size: int) -> Path:
    from osgeo import gdal, osr

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    data = [np.clip(128 + 90 * np.sin(9 * yy + b) * np.cos(7 * xx) + rng.normal(0, 6, yy.shape), 0, 255)
            for b in range(3)]
    ds = gdal.GetDriverByName("GTiff").Create(str(path), size, size, 3, gdal.GDT_Byte)
    ds.SetGeoTransform([500000, 1, 0, 5800000, 0, -1])
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds.SetProjection(srs.ExportToWkt())
    for b in range(3):
        ds.GetRasterBand(b + 1).WriteArray(np.rint(data[b]).astype(np.uint8))
    ds = None
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench fidelity", description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512, help="LR raster side in pixels (default 512: on 256 px the "
                   "run-to-run noise was as large as the cost, +18 %% once at x2 against +2.5 %% at 512 px)")
    p.add_argument("--scales", default="2,2.5,4", help="comma-separated scales (default 2,2.5,4)")
    p.add_argument("--model", default=None, help="model (default: the installed default)")
    p.add_argument("--repeat", type=int, default=2, help="timed pairs per scale (default 2)")
    p.add_argument("--tile-size", type=int, default=None, help="LR tile core (default: automatic)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    from mlin_qgis.core.pipeline import SuperResolveRequest, superresolve

    print("| scale | default s | --fidelity s | cost | max abs(avg - input) default / fidelity |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        inp = _raster(Path(folder) / "in.tif", args.size)
        for scale in (float(v) for v in args.scales.split(",")):
            best = {False: float("inf"), True: float("inf")}
            worst_err = {False: 0.0, True: 0.0}
            for round_ in range(args.repeat + 1):  # round 0 warms the model and the caches up
                for fid in (False, True):
                    start = time.perf_counter()
                    result = superresolve(SuperResolveRequest(inp, Path(folder) / f"out{int(fid)}.tif", scale,
                                                              model=args.model, tile_size=args.tile_size,
                                                              threads=args.threads, fidelity=fid))
                    if round_:
                        best[fid] = min(best[fid], time.perf_counter() - start)
                    if result.fidelity is not None:
                        worst_err[fid] = max(result.fidelity.max)
            cost = 100 * (best[True] / best[False] - 1)
            print(f"| x{scale:g} | {best[False]:.2f} | {best[True]:.2f} | {cost:+.1f} % | "
                  f"{worst_err[False]:.3g} / {worst_err[True]:.3g} |", flush=True)
    print(f"({args.size}² px input, best of {args.repeat}; the report is made for both)", file=sys.stderr)
    return 0
