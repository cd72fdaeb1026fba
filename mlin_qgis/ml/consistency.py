"""Radiometric consistency of an SR output with its LR input, and the fidelity correction, for `evaluate`.

Analysts who compute indices from an SR raster need its area average over each input pixel's
footprint to give that input pixel back (the radiometric-fidelity issue). `evaluate` reports how far
each method is from that, next to PSNR/SSIM, and can apply the correction `sr --fidelity` applies, so
its cost in PSNR/SSIM is measured on the same images. Both use core/fidelity.py's exact operator
(output pixel ``j`` spans ``[j h / H, (j + 1) h / H)`` input pixels, the grid the models sample), so
these numbers are the ones a run's ``FIDELITY_RMS`` metadata reports. Whole images are solved at once;
the pipeline solves per tile with a reach that matches the whole-raster solve (core/fidelity.py).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from mlin_qgis.core import fidelity

# The images are 8-bit: RGB in [0, 1] times this is the input's DN.
DN_RANGE = 255.0


def _areas(lr_size: tuple[int, int], out_size: tuple[int, int]) -> tuple[fidelity.AxisArea, fidelity.AxisArea]:
    """Row and column area operators of the whole image (every input pixel, every output pixel)."""
    (h, w), (oh, ow) = lr_size, out_size
    return fidelity.axis_area(h, oh, 0, h), fidelity.axis_area(w, ow, 0, w)


def _chw(x: torch.Tensor) -> np.ndarray:
    """(C,H,W) float64 from a (1,C,H,W) or (C,H,W) tensor."""
    arr = x.detach().to("cpu", torch.float64).numpy()
    return arr[0] if arr.ndim == 4 else arr


def area_average(sr: torch.Tensor, lr_size: tuple[int, int]) -> np.ndarray:
    """The area average of an output (C,H,W) over each input pixel's footprint: (C,h,w), float64."""
    x = _chw(sr)
    rows, cols = _areas(lr_size, (x.shape[-2], x.shape[-1]))
    return fidelity.average(rows, fidelity.average(cols, x, 2), 1)


def consistency_rms(sr: torch.Tensor, lr: torch.Tensor, data_range: float = DN_RANGE) -> float:
    """RMS over input pixels and bands of (area average of SR - LR), in input units (DN for 8-bit).

    SR is clipped to [0, 1] first, as the metrics and a saved raster see it, but not rounded: the
    rounding of an integer output adds its own, known, error (at most 0.5 DN per average)."""
    y = _chw(lr)
    avg = area_average(sr.clamp(0.0, 1.0), (y.shape[-2], y.shape[-1]))
    return float(math.sqrt(np.mean((avg - y) ** 2)) * data_range)


def fidelity_corrected(sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """The minimum-norm correction of SR (B,C,H,W) so its area average equals LR (core/fidelity.correct),
    applied to the raw (unclipped) output as the pipeline applies it before the raster's type."""
    outs = []
    for x, y in zip(sr, lr):
        rows, cols = _areas((y.shape[-2], y.shape[-1]), (x.shape[-2], x.shape[-1]))
        outs.append(torch.from_numpy(fidelity.correct(_chw(x), _chw(y), rows, cols)))
    return torch.stack(outs)
