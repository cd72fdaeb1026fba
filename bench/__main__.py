"""`python -m bench [--quick | --full]` prints the benchmark table; `python -m bench tune` the engine sweep;
`python -m bench cluster` the single-process vs Dask cluster table (bench/cluster.py).
`python -m bench fidelity`: `sr` with and without --fidelity, side by side (bench/fidelity.py).
`python -m bench aware`: the degradation-aware `auto` against plain single models, side by side (bench/aware.py).

Default (`make bench`): x2/x4/x8, best of 2 rounds, every installed model, the int8-vs-fp32 rows and
the memory check on MEMORY_DEFAULT (1024² and 3072² at x1.2); about 20 minutes on 2 idle cores, most
of it the 3072² raster. `--quick`: one round, x4 only, no int8 rows, no memory check (a smoke run).
`--full`: 3 rounds and the memory check up to 8192² at x1.2 (97 Mpx of output: hours on 2 cores,
meant for a GPU or a long idle slot). `--memory 640,1024@1.25` picks other sizes.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# (sizes, scale) of the memory check. The cost is the raster: the encoder runs on every LR pixel
# (~2.7 MFLOP each, plus the halo) and the decoder on every output pixel (~1.6 MFLOP each), so
# 2048x2048 at x2 takes many minutes on 2 cores. The smaller raster must already hold an interior
# tile (the default tile is 256 LR px + a 39 px halo each side: 640 px = 3 tiles a side), else it
# only has smaller border tiles and "growth" is just the tile getting to full size.
MEMORY_DEFAULT = ((1024, 3072), 1.2)
MEMORY_FULL = ((1024, 3072, 8192), 1.2)


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: x4, 1 round, no memory check")
    p.add_argument("--full", action="store_true", help="3 rounds and the 1024 vs 3072 vs 8192 (x1.2) memory check")
    p.add_argument("--scales", default=None, help="comma-separated integer scales (default 2,4,8)")
    p.add_argument("--repeat", type=int, default=None, help="timed rounds after the warm-up (default 2)")
    p.add_argument("--models", default=None, help="comma-separated model folder names under models/")
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                   help="torch checkpoint for a model's rows 1-2 (default: known locations)")
    p.add_argument("--shared", type=Path, default=None, help="the shared folder (default ../shared)")
    p.add_argument("--threads", type=int, default=None, help="threads for torch and onnxruntime (default: cores)")
    p.add_argument("--memory", default=None, metavar="SIZES@SCALE",
                   help="memory check rasters, e.g. 512,2048@2 ('off' to skip)")
    p.add_argument("--no-cuda", action="store_true", help="CPU rows only even when CUDA is present")
    return p.parse_args(argv)


def _memory_plan(args: argparse.Namespace) -> tuple[tuple[int, ...], float] | None:
    if args.memory == "off":
        return None
    if args.memory:
        sizes, scale = args.memory.split("@")
        return tuple(int(v) for v in sizes.split(",")), float(scale)
    if args.quick:
        return None
    return MEMORY_FULL if args.full else MEMORY_DEFAULT


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["tune"]:
        from .tune import main as tune_main

        return tune_main(argv[1:])
    if argv[:1] == ["cluster"]:
        from .cluster import main as cluster_main

        return cluster_main(argv[1:])
    if argv[:1] == ["aware"]:
        from .aware import main as aware_main

        return aware_main(argv[1:])
    if argv[:1] == ["fidelity"]:
        from .fidelity import main as fidelity_main

        return fidelity_main(argv[1:])
    args = _parse(argv)
    threads = args.threads or os.cpu_count() or 1
    import torch

    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    from . import inputs, table
    from .peak import MatmulPeak

    started = time.perf_counter()
    scales = [int(v) for v in args.scales.split(",")] if args.scales else [4] if args.quick else [2, 4, 8]
    repeat = args.repeat or (1 if args.quick else 3 if args.full else 2)
    shared = args.shared or inputs.default_shared()
    shared = shared if shared.is_dir() else None
    overrides = {k: Path(v) for k, v in (c.split("=", 1) for c in args.checkpoint)}
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731  progress to stderr, table to stdout
    with inputs.temp_dir() as tmp:
        image = inputs.load_bench_image(shared)
        names = args.models.split(",") if args.models else None
        models = inputs.find_models(names, shared, overrides, Path(tmp))
        _, _, cuda_name = table.cuda_device()
        peak = MatmulPeak()
        peak.sample(5)
        log(f"bench: {len(models)} model(s), scales {scales}, {repeat} round(s), {threads} threads")
        results = table.measure(models, image, scales, repeat, threads, not args.no_cuda, peak, log)
        peak.sample(5)
        engine = next(r.row for r in results if r.row.key == "onnx")
        cfg = getattr(engine.engine, "config", None)
        note = (f"{engine.label[4:]}, provider {engine.provider}"
                + (f", chunk {cfg.chunk} queries, intra-op threads {cfg.threads or os.cpu_count()}" if cfg else ""))
        focus = 4 if 4 in scales else scales[len(scales) // 2]
        lines = ["## mlin-qgis bench", ""] + ["- " + h for h in table.header(
            image, models, scales, repeat, threads, peak, note, cuda_name)] + [""]
        lines += table.format_table(results, scales, peak.best, focus)
        if not args.quick:
            from . import precision

            default = next((m for m in models if (m.onnx_dir / "decoder.int8.onnx").is_file()), models[0])
            log("  int8 vs fp32 ...")
            lines += [""] + precision.measure(default.onnx_dir, image.hr, scales, repeat, threads)
        plan = _memory_plan(args)
        if plan is not None:
            lines += [""] + memory_section(plan, image, models[0], Path(tmp), log)
    lines += ["", f"(bench wall time {time.perf_counter() - started:.0f} s)"]
    print("\n".join(lines))
    failed = [r for r in results if r.max_diff is not None and r.max_diff > table.AGREE_TOL]
    return 1 if failed else 0


def memory_section(plan: tuple[tuple[int, ...], float], image, model, tmp: Path, log) -> list[str]:
    from . import memory

    sizes, scale = plan
    from mlin_qgis.core.pipeline import estimate

    results, estimates = [], []
    for size in sizes:
        src = memory.write_raster(tmp / f"mem_{size}.tif", size, image.hr)
        log(f"  memory: {size}x{size} at x{scale:g} ...")
        # the calibrated estimate, made here (not in the measured process, whose memory it would add to)
        estimates.append(estimate(src, scale, str(model.onnx_dir)))
        results.append(memory.measure(src, tmp / f"mem_{size}_sr.tif", scale, str(model.onnx_dir), size))
        (tmp / f"mem_{size}_sr.tif").unlink(missing_ok=True)
    ok, growth = memory.is_flat(results)
    lines = [f"Peak RSS of the tiled GeoTIFF path (mlin_qgis.core.pipeline.superresolve, default tile, model "
             f"{model.name}), each size in a fresh process (VmHWM at its end):", "",
             "| raster | scale | output | tiles | peak RSS MiB | RSS after imports MiB | seconds | estimated s "
             "(estimate / measured) | provider |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r, est in zip(results, estimates):
        lines.append(f"| {r.size}x{r.size} | x{r.scale:g} | {r.out_size[1]}x{r.out_size[0]} | {r.tiles} | "
                     f"{r.peak_mib:.0f} | {r.base_mib:.0f} | {r.seconds:.1f} | {est.seconds:.1f} "
                     f"({est.seconds / max(r.seconds, 1e-9):.2f}x) | {r.provider} |")
    lines += ["", f"estimates from {estimates[0].basis} (core/calibration.py: a sub-second timed run, cached)"]
    big = results[-1]
    whole = big.out_size[0] * big.out_size[1] * 3 * 4 / 2 ** 20  # one float32 RGB copy of the whole output
    lines += ["", f"memory: peak grows {100 * growth:+.1f} % from {sizes[0]}x{sizes[0]} to {sizes[-1]}x{sizes[-1]} "
                  f"({big.size ** 2 / sizes[0] ** 2:.1f}x the pixels) -> "
                  f"{'FLAT (within 15 %)' if ok else 'NOT FLAT (> 15 %)'}; for scale, one float32 copy of the "
                  f"largest output would be {whole:.0f} MiB ({100 * whole / results[0].peak_mib:.0f} % of the "
                  "smaller run's peak)"]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
