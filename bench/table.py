"""`python -m bench`: the one table (rows x scales, all measured in this run on the same inputs).

Protocol: for each scale the LR input is the 256x256 image downscaled by s with THE resize
(`resize_bicubic`, 8-bit), and every row produces the same 256x256 output (65536 px), so each
scale costs the decoder the same number of queries and the whole table stays within minutes on 2
cores. Each row runs once as a warm-up (its output is kept for the agreement check), then `repeat`
rounds run every row in turn (interleaved, so background load hits all rows alike) and the best
time per row is kept. The matmul peak is sampled between rounds for the same reason.
"""
from __future__ import annotations

import copy
import os
import platform
import time
from dataclasses import dataclass, field

import numpy as np

from .inputs import BenchImage, BenchModel, make_lr
from .peak import MatmulPeak
from .rows import GdalBicubic, OnnxEngine, Row, Timing, TorchFactored, TorchStraightforward

AGREE_TOL = 1e-4


@dataclass
class Cell:
    """Best timings of one row at one scale."""

    total: float = float("inf")
    decoder: float | None = None
    out_px: int = 0
    lr_px: int = 0

    def add(self, t: Timing) -> None:
        self.total = min(self.total, t.total)
        if t.decoder is not None:
            self.decoder = t.decoder if self.decoder is None else min(self.decoder, t.decoder)


@dataclass
class RowResult:
    row: Row
    model: str
    cells: dict[int, Cell] = field(default_factory=dict)
    max_diff: float | None = None  # vs row (1), over all scales, [0, 1] units


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cuda_device() -> tuple[bool, bool, str]:
    """(torch has CUDA, onnxruntime offers CUDA, device name)."""
    import onnxruntime as ort
    import torch

    torch_cuda = torch.cuda.is_available()
    ort_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    name = torch.cuda.get_device_name(0) if torch_cuda else ("CUDA (onnxruntime)" if ort_cuda else "")
    return torch_cuda, ort_cuda, name


def build_rows(model: BenchModel, threads: int, with_cuda: bool) -> list[Row]:
    rows: list[Row] = [TorchStraightforward(model.torch_model), TorchFactored(model.torch_model),
                       OnnxEngine(model.onnx_dir, model.torch_model.decoder, threads=threads), GdalBicubic()]
    if with_cuda:
        torch_cuda, ort_cuda, _ = cuda_device()
        if torch_cuda:
            gpu_model = copy.deepcopy(model.torch_model)
            rows += [TorchStraightforward(gpu_model, "cuda"), TorchFactored(gpu_model, "cuda")]
        if ort_cuda:
            rows.append(OnnxEngine(model.onnx_dir, model.torch_model.decoder, device="cuda"))
    return rows


def measure(models: list[BenchModel], image: BenchImage, scales: list[int], repeat: int, threads: int,
            with_cuda: bool, peak: MatmulPeak, log=print) -> list[RowResult]:
    results: list[RowResult] = []
    for model in models:
        rows = build_rows(model, threads, with_cuda)
        res = [RowResult(r, model.name) for r in rows]
        reference = {}  # (device, scale) -> row (1)'s output on that device
        for s in scales:
            lr = make_lr(image.hr, s)
            out_size = image.hr.shape[1:]
            for r in res:
                t0 = time.perf_counter()
                t = r.row.run(lr, out_size)
                r.cells.setdefault(s, Cell(out_px=out_size[0] * out_size[1], lr_px=lr.shape[1] * lr.shape[2]))
                if isinstance(r.row, TorchStraightforward):
                    reference[(r.row.device, s)] = t.out
                elif not isinstance(r.row, GdalBicubic):
                    ref = reference.get((r.row.device, s), reference.get(("cpu", s)))
                    diff = float(np.abs(t.out - ref).max())
                    r.max_diff = diff if r.max_diff is None else max(r.max_diff, diff)
                log(f"  {model.name} x{s} warm-up {r.row.key}@{r.row.device}: {time.perf_counter() - t0:.2f} s")
            for _ in range(repeat):
                for r in res:
                    r.cells[s].add(r.row.run(lr, out_size))
                peak.sample(3)
        results += res
    return results


def _mpx(px: int, seconds: float | None) -> float | None:
    return None if seconds is None else px / seconds / 1e6


def format_table(results: list[RowResult], scales: list[int], peak: float, focus: int) -> list[str]:
    """Markdown: Mpx/s end to end and decoder-only (ratio to row (1) of the same model and device),
    the decoder's achieved GFLOP/s per scale and its share of the measured matmul peak at `focus`."""
    head = (["model", "row", "device"] + [f"x{s} Mpx/s" for s in scales] + [f"x{s} decoder Mpx/s" for s in scales]
            + ["decoder GFLOP/s " + "/".join(f"x{s}" for s in scales), f"% of peak x{focus}", "max abs diff vs (1)"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        refs = [b for b in results if b.model == r.model and isinstance(b.row, TorchStraightforward)]
        base = next((b for b in refs if b.row.device == r.row.device), refs[0])  # ORT CUDA without torch CUDA
        device = getattr(r.row, "provider", None) or r.row.device
        cells = []
        for use_decoder in (False, True):
            for s in scales:
                c, b = r.cells[s], base.cells[s]
                mine = _mpx(c.out_px, c.decoder if use_decoder else c.total)
                ref = _mpx(b.out_px, b.decoder if use_decoder else b.total)
                cells.append("—" if mine is None else f"{mine:.4f} ({mine / ref:.2f}x)")
        gflops, share = [], "—"
        for s in scales:
            c = r.cells[s]
            macs = r.row.macs_per_pixel(c.lr_px, c.out_px)
            if macs is None or c.decoder is None:
                gflops.append("—")
                continue
            rate = 2.0 * macs * c.out_px / c.decoder / 1e9
            gflops.append(f"{rate:.1f}")
            if s == focus and r.row.device == "cpu":
                share = f"{100.0 * rate / peak:.0f} %"
        diff = "—" if r.max_diff is None else f"{r.max_diff:.1e}" + ("" if r.max_diff <= AGREE_TOL else " FAIL")
        lines.append("| " + " | ".join([r.model, r.row.label, device] + cells + [" / ".join(gflops), share, diff])
                     + " |")
    return lines


def header(image: BenchImage, models: list[BenchModel], scales: list[int], repeat: int, threads: int,
           peak: MatmulPeak, engine_note: str, cuda_name: str) -> list[str]:
    import onnxruntime as ort
    import torch
    from osgeo import gdal

    from . import flops

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    lines = [
        f"machine: {cpu_name()}, {os.cpu_count()} cores"
        + (f", load average {load[0]:.1f} at start" if load else "")
        + f"; torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {ort.__version__}, "
          f"numpy {np.__version__}, GDAL {gdal.__version__}"
        + (f"; GPU: {cuda_name}" if cuda_name else "; no GPU"),
        f"image: {image.source}; LR = resize_bicubic(image, 256/s) (8-bit), output 256x256 = 65536 px at every scale",
        f"timing: best of {repeat} interleaved rounds after a warm-up; Mpx/s = output pixels per second "
        "including the encoder; decoder Mpx/s = after the latent features (rows 1-2 include `project`; "
        "row 3 is decoder.onnx alone, its projection runs in encoder.onnx); (Nx) = speed vs row (1)",
        f"engine: {engine_note}",
        f"peak: numpy float32 matmul {peak.n}x{peak.n}, all cores, best of {peak.samples}: {peak.best:.1f} GFLOP/s",
    ]
    for m in models:
        dec = m.torch_model.decoder
        lines.append(
            f"model {m.name} ({m.card.get('weighting')} weighting): {m.weights}; decoder multiply-adds per output "
            f"px: straightforward {flops.straightforward_macs_per_query(dec):,}, factored "
            f"{flops.factored_macs_per_query(dec):,} + projection {flops.projection_macs_per_lr_pixel(dec):,}/LR px "
            f"(/s^2 per output px)")
    return lines
