"""No-reference artefact indicators for super-resolved rasters that have no ground truth.

On a user's native raster there is no HR image to compute PSNR against, yet "fewer artefacts" must
still be a number. Two indicators, both computed from the LR input and the SR output alone:

- **overshoot** (DN rms): how far output pixels leave the range of the input pixels around them
  (the 3x3 LR neighbourhood of the LR pixel each output pixel falls in). Ringing, halos and
  worm-like texture all put values outside that range; a smooth interpolator barely does.
- **new high-frequency energy** (% of the output's AC energy): spectral energy above the input's
  Nyquist frequency (0.5 / s cycles per output pixel). Real detail lives there too, so this is a
  "how much did the model invent" number to read beside overshoot, not a defect on its own.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class ArtefactScores:
    overshoot_dn: float  # rms DN (0-255) outside the local input range
    overshoot_share: float  # fraction of output values outside it by more than 2 DN
    hf_energy_pct: float  # % of AC energy above the input's Nyquist frequency


def _lr_index(n_in: int, n_out: int) -> np.ndarray:
    """The LR pixel each output pixel centre falls in (the project's pixel-centre convention)."""
    centres = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    return np.clip(np.floor(centres + 0.5).astype(np.int64), 0, n_in - 1)


def overshoot(lr: np.ndarray, sr: np.ndarray) -> tuple[float, float]:
    """(rms DN, share > 2 DN) of SR values outside the 3x3 min/max of the LR around them.

    lr (C, h, w) and sr (C, H, W) in [0, 255] units."""
    lr = np.asarray(lr, np.float64)
    sr = np.asarray(sr, np.float64)
    hi = ndimage.maximum_filter(lr, size=(1, 3, 3), mode="nearest")
    lo = ndimage.minimum_filter(lr, size=(1, 3, 3), mode="nearest")
    iy, ix = _lr_index(lr.shape[1], sr.shape[1]), _lr_index(lr.shape[2], sr.shape[2])
    hi_o, lo_o = hi[:, iy][:, :, ix], lo[:, iy][:, :, ix]
    excess = np.maximum(sr - hi_o, 0.0) + np.maximum(lo_o - sr, 0.0)
    return float(np.sqrt(np.mean(excess ** 2))), float(np.mean(excess > 2.0))


def high_frequency_energy(sr: np.ndarray, scale_y: float, scale_x: float) -> float:
    """% of the output's AC spectral energy above the input's Nyquist band (per axis, a box)."""
    sr = np.asarray(sr, np.float64)
    window = np.outer(np.hanning(sr.shape[1]), np.hanning(sr.shape[2]))
    total = high = 0.0
    fy = np.abs(np.fft.fftfreq(sr.shape[1]))[:, None]
    fx = np.abs(np.fft.fftfreq(sr.shape[2]))[None, :]
    outside = (fy > 0.5 / scale_y) | (fx > 0.5 / scale_x)
    for band in sr:
        power = np.abs(np.fft.fft2((band - band.mean()) * window)) ** 2
        power[0, 0] = 0.0
        total += power.sum()
        high += power[outside].sum()
    return float(100.0 * high / max(total, 1e-12))


def artefact_scores(lr: np.ndarray, sr: np.ndarray) -> ArtefactScores:
    """Both indicators for one LR/SR pair (C, h, w) / (C, H, W) in [0, 255] units."""
    rms, share = overshoot(lr, sr)
    sy, sx = sr.shape[1] / lr.shape[1], sr.shape[2] / lr.shape[2]
    return ArtefactScores(overshoot_dn=rms, overshoot_share=share, hf_energy_pct=high_frequency_energy(sr, sy, sx))
