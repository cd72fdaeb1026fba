"""`python -m bench aware`: what the degradation-aware default costs, side by side with plain single models.

Rows, each a whole `sr` run on the same raster, alternated round by round (best of ``--repeat``), so a
busy machine slows all alike:
- ``auto``: the aware model as a user runs it (code estimated from windows of the raster, weights
  mixed once, one encoder and one decoder pass per tile);
- ``looks=clean``: the same with the code named (no estimate), to isolate the estimate's cost;
- every other installed single model (``--models``), e.g. the official LIIF.
The acceptance (issue 30) compares ``auto`` with a plain single model: within 10 % of its Mpx/s.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from .fidelity import _raster


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench aware", description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256, help="LR raster side in pixels (default 256)")
    p.add_argument("--scales", default="2,4", help="comma-separated scales (default 2,4)")
    p.add_argument("--models", default="liif-edsr-div2k", help="plain models to compare with (comma-separated)")
    p.add_argument("--repeat", type=int, default=2, help="timed rounds (default 2, after a warm-up round)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    from mlin_qgis.core.pipeline import SuperResolveRequest, superresolve

    rows = [("auto", {}), ("looks=clean", {"input_looks": "clean"})]
    rows += [(name, {"model": name}) for name in args.models.split(",") if name]
    print(f"`sr` on a {args.size}x{args.size} px uint8 raster, best of {args.repeat} alternated rounds "
          f"(threads: {args.threads or 'all'})")
    print("")
    print("| scale | " + " | ".join(f"{name} Mpx/s" for name, _ in rows) + " | auto / " + rows[-1][0] + " |")
    print("|---|" + "---|" * (len(rows) + 1))
    with tempfile.TemporaryDirectory() as folder:
        inp = _raster(Path(folder) / "in.tif", args.size)
        for scale in (float(v) for v in args.scales.split(",")):
            best = {name: float("inf") for name, _ in rows}
            mpx = 0.0
            for round_ in range(args.repeat + 1):  # round 0 warms the models and the caches up
                for name, options in rows:
                    start = time.perf_counter()
                    result = superresolve(SuperResolveRequest(inp, Path(folder) / "out.tif", scale,
                                                              threads=args.threads, **options))
                    seconds = time.perf_counter() - start
                    mpx = result.width * result.height / 1e6
                    if round_:
                        best[name] = min(best[name], seconds)
            rates = [mpx / best[name] for name, _ in rows]
            print(f"| x{scale:g} | " + " | ".join(f"{r:.4f}" for r in rates) + f" | {rates[0] / rates[-1]:.2f} |")
    return 0
