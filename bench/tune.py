"""`python -m bench tune`: what each engine knob and exact graph change is worth, decoder.onnx alone.

Case: the table's x4 case (LR 64x64 from the bench image -> 65536 queries), plus a pipeline-sized
tile (LR 334x334, x2's default tile with its halo) where the decoder's per-call work on the whole
`proj` (its NCHW -> rows transpose) is paid once per chunk. Every configuration gets its own
onnxruntime session; rounds run all configurations in turn and the best time is kept, so background
load hits them alike. Outputs are checked against the first configuration of their case.

The tile case also runs through the engine itself (mlin_qgis.core.engine.SuperResolver.decode_window:
its CPU chunk and the row band each decoder call gets), so the sweep measures what ships. The decoder
graph variants once tried here (fused neighbours, channels-last, channels-first) were measured slower
and removed (docs/PERFORMANCE.md keeps their numbers).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import flops, inputs
from .peak import MatmulPeak, single_thread_cpu_peak

LEVELS = ("disable", "basic", "extended", "all")
TILE_LR, TILE_ROWS = 334, 24  # the tile case: LR 334x334 at x2, its first 24 output rows (16032 queries)


@dataclass
class Config:
    label: str
    chunk: int
    threads: int
    level: str = "all"
    spinning: bool = True
    case: str = "x4"  # x4 | tile
    engine: bool = False  # through SuperResolver.decode_window (row band per call), not a bare session
    session: Any = None
    out_std: Any = None
    out_mean: Any = None
    best: float = float("inf")
    best_cpu: float = float("inf")
    diff: float | None = None


def _session(path: Path, cfg: Config) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[cfg.level]
    opts.intra_op_num_threads = cfg.threads
    opts.log_severity_level = 3
    if not cfg.spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _queries(lr_size: tuple[int, int], out_size: tuple[int, int], n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    (h, w), (oh, ow) = lr_size, out_size
    r = (np.arange(oh) + 0.5) * (h / oh) - 0.5
    c = (np.arange(ow) + 0.5) * (w / ow) - 0.5
    coord = np.stack(np.meshgrid(r, c, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)[:n]
    cell = np.broadcast_to(np.array([h / oh, w / ow], np.float32), coord.shape).copy()
    return coord, cell


def _run(cfg: Config, proj: np.ndarray, coord: np.ndarray, cell: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Wall and process CPU seconds of one pass. With 1 thread and a busy machine, CPU seconds are
    the steadier A/B measure (time sliced away is not counted); wall is what a user waits. The tile
    case returns colours (3, rows, cols) as the engine does (rgb * output_std + output_mean, unclipped),
    so bare sessions and the engine compare bit for bit."""
    c0, t0 = time.process_time(), time.perf_counter()
    if cfg.engine:
        size = (2 * TILE_LR, 2 * TILE_LR)
        out = cfg.session.decode_window(proj, (0, 0), (TILE_LR, TILE_LR), size, (0, TILE_ROWS), (0, size[1]),
                                        clip=False)[0]
        return time.perf_counter() - t0, time.process_time() - c0, out
    parts = [cfg.session.run(["rgb"], {"proj": proj, "coord": coord[a:a + cfg.chunk], "cell": cell[a:a + cfg.chunk]})[0]
             for a in range(0, len(coord), cfg.chunk)]
    dt, cpu, rgb = time.perf_counter() - t0, time.process_time() - c0, np.concatenate(parts)
    if cfg.case == "tile":
        rgb = rgb.reshape(TILE_ROWS, -1, 3).transpose(2, 0, 1) * cfg.out_std + cfg.out_mean
    return dt, cpu, rgb


def configs(cores: int, chunks: list[int]) -> list[Config]:
    out = [Config(f"chunk {c}", c, cores) for c in chunks]
    best = 4096 if 4096 in chunks else chunks[len(chunks) // 2]  # the knobs below are tried at this chunk
    if cores > 1:
        out += [Config(f"chunk {best}, 1 thread", best, 1)]
    out += [Config(f"chunk {best}, opt {lv}", best, cores, level=lv) for lv in LEVELS[:-1]]
    out += [Config(f"chunk {best}, no spinning", best, cores, spinning=False)]
    out += [Config(f"tile {TILE_LR}x{TILE_LR}: " + ("engine (row band per call)" if engine else "whole proj per call")
                   + f", chunk {c}", c, cores, case="tile", engine=engine)
            for engine in (False, True) for c in (4096, 16384)]
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench tune", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="liif-edsr-div2k")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--chunks", default="2048,4096,16384,65536")
    p.add_argument("--shared", type=Path, default=None)
    p.add_argument("--only", default=None, help="substrings (a|b) selecting configurations by label")
    p.add_argument("--threads", type=int, default=None,
                   help="intra-op threads for every configuration (default: cores; 1 gives steadier CPU-second "
                        "comparisons on a busy machine)")
    args = p.parse_args(argv)
    import torch

    from mlin_qgis.core.card import ModelCard
    from mlin_qgis.core.engine import SuperResolver

    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    shared = args.shared or inputs.default_shared()
    shared = shared if shared.is_dir() else None
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    with inputs.temp_dir() as tmp:
        tmp = Path(tmp)
        model = inputs.find_models([args.model], shared, {}, tmp)[0]
        dec = model.torch_model.decoder
        card = ModelCard.from_dict(model.card)
        out_std = np.asarray(card.output_std, np.float32).reshape(3, 1, 1)
        out_mean = np.asarray(card.output_mean, np.float32).reshape(3, 1, 1)
        image = inputs.load_bench_image(shared)
        enc = _session(model.onnx_dir / "encoder.onnx", Config("enc", 0, cores))
        norm = lambda x: ((x - 0.5) / 0.5).astype(np.float32)[None]  # noqa: E731  (cards use 0.5/0.5)
        lr4 = inputs.make_lr(image.hr, 4)
        big = np.tile(image.hr, (1, 2, 2))[:, :TILE_LR, :TILE_LR]
        cases = {
            "x4": (enc.run(["proj"], {"image": norm(lr4)})[0], *_queries((64, 64), (256, 256))),
            "tile": (enc.run(["proj"], {"image": norm(big)})[0],
                     *_queries((TILE_LR, TILE_LR), (2 * TILE_LR, 2 * TILE_LR), TILE_ROWS * 2 * TILE_LR)),
        }
        todo = [c for c in configs(args.threads or cores, [int(v) for v in args.chunks.split(",")])
                if not args.only or any(o in c.label for o in args.only.split("|"))]
        for c in todo:
            c.out_std, c.out_mean = out_std, out_mean
            c.session = SuperResolver(model.onnx_dir, device="cpu", threads=c.threads, chunk=c.chunk) if c.engine \
                else _session(model.onnx_dir / "decoder.onnx", c)
        reference: dict[str, np.ndarray] = {}
        peak = MatmulPeak()
        for rnd in range(args.rounds + 1):  # round 0 is the warm-up
            for c in todo:
                dt, cpu, out = _run(c, *cases[c.case])
                if rnd == 0:
                    ref = reference.setdefault(c.case, out)
                    c.diff = float(np.abs(out - ref).max())
                else:
                    c.best, c.best_cpu = min(c.best, dt), min(c.best_cpu, cpu)
                log(f"  round {rnd} {c.label}: {dt:.2f} s wall, {cpu:.2f} s CPU")
            peak.sample(3)
        macs = flops.factored_macs_per_query(dec)
        single = single_thread_cpu_peak()
        print(f"## bench tune: decoder.onnx of {model.name}, {cores} cores, best of {args.rounds} "
              f"(load average {os.getloadavg()[0]:.1f} at the end)")
        print(f"\npeaks: numpy float32 matmul, all cores, best of {peak.samples}: {peak.best:.1f} GFLOP/s wall; "
              f"1 thread: {single:.1f} GFLOP per CPU-second. Decoder: {macs:,} multiply-adds per query "
              "(projection not included: it is in encoder.onnx). % of peak: 1-thread configurations in CPU "
              "seconds against the 1-thread peak (steady on a busy machine), others in wall seconds against "
              "the all-core peak.\n")
        print("| configuration | queries | wall s | CPU s | Mpx/s (wall) | GFLOP/s (wall) | GFLOP per CPU-s "
              "| % of peak | max abs diff vs first |")
        print("|---|---|---|---|---|---|---|---|---|")
        for c in todo:
            n = len(cases[c.case][1])
            work = 2.0 * macs * n / 1e9
            share = work / c.best_cpu / single if c.threads == 1 else work / c.best / peak.best
            print(f"| {c.label} | {n} | {c.best:.3f} | {c.best_cpu:.3f} | {n / c.best / 1e6:.4f} | "
                  f"{work / c.best:.1f} | {work / c.best_cpu:.1f} | {100 * share:.0f} % | {c.diff:.1e} |")
    return 0
