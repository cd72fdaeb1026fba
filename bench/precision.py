"""The int8 rows of `make bench`: the ONNX engine with the fp32 decoder and with the int8 decoder
(decoder.int8.onnx, `mlin quantize`), same LR input, same run, interleaved rounds, end to end
(encoder + decoder). Quality is not measured here (minutes on `val`): see docs/PERFORMANCE.md for the
`evaluate` command and its paired PSNR differences."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mlin_qgis.core.models import DECODER_INT8_FILE

LR_SIDE = 64  # LR input side: x2/x4/x8 make 128² / 256² / 512² outputs (seconds each on 2 cores)


def measure(model_dir: Path, hr: np.ndarray, scales: list[int], repeat: int, threads: int) -> list[str]:
    from mlin_qgis.core.engine import SuperResolver

    if not (model_dir / DECODER_INT8_FILE).is_file():
        return [f"int8: {model_dir.name} has no {DECODER_INT8_FILE} (make it with `mlin quantize --model {model_dir}`)"]
    lr = np.ascontiguousarray(hr[:, :LR_SIDE, :LR_SIDE])
    engines = {p: SuperResolver(model_dir, device="cpu", threads=threads, precision=p) for p in ("fp32", "int8")}
    for engine in engines.values():  # warm-up (session set-up, first-call allocations)
        engine.upscale(lr[:, :16, :16], (32, 32))
    best: dict[tuple[str, int], float] = {}
    diffs: dict[int, float] = {}
    for scale in scales:
        size = (LR_SIDE * scale, LR_SIDE * scale)
        outs = {}
        for _ in range(repeat):
            for name, engine in engines.items():  # interleaved, so drift hits both rows alike
                t = time.perf_counter()
                outs[name] = engine.upscale(lr, size)
                dt = time.perf_counter() - t
                best[(name, scale)] = min(best.get((name, scale), float("inf")), dt)
        diffs[scale] = float(np.sqrt(np.mean((outs["fp32"] - outs["int8"]) ** 2)) * 255)
    lines = [f"int8 decoder vs fp32 ({model_dir.name}, ONNX engine end to end on a {LR_SIDE}x{LR_SIDE} LR crop, "
             f"{threads} threads, best of {repeat} interleaved rounds):", "",
             "| precision | " + " | ".join(f"x{s} Mpx/s" for s in scales) + " | RMS difference to fp32 (8-bit DN) |",
             "|---|" + "---|" * len(scales) + "---|"]
    for name in ("fp32", "int8"):
        cells = []
        for s in scales:
            mpx = (LR_SIDE * s) ** 2 / 1e6 / best[(name, s)]
            ratio = best[("fp32", s)] / best[(name, s)]
            cells.append(f"{mpx:.4f} ({ratio:.2f}x)")
        rms = "—" if name == "fp32" else " / ".join(f"x{s} {diffs[s]:.3f}" for s in scales)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {rms} |")
    return lines
