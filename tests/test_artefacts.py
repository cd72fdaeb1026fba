"""The no-reference artefact indicators respond to what they claim to measure."""
from __future__ import annotations

import numpy as np
import torch

from mlin_qgis.ml.artefacts import artefact_scores, high_frequency_energy, overshoot
from mlin_qgis.ml.resize import resize_bicubic


def _edges(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lr = np.zeros((3, 32, 32))
    lr[:, :, 16:] = 200.0
    lr[:, 8:12, :] = 90.0
    return np.clip(lr + rng.normal(0, 1.0, lr.shape), 0, 255)


def test_nearest_upsampling_never_overshoots_and_adds_ringing_is_caught():
    lr = _edges()
    nearest = lr.repeat(4, 1).repeat(4, 2)
    assert overshoot(lr, nearest) == (0.0, 0.0)
    # ringing: a damped oscillation added along the vertical edge
    x = np.arange(128)
    ring = 25 * np.exp(-np.abs(x - 64) / 6.0) * np.cos((x - 64) * 1.3)
    rms, share = overshoot(lr, np.clip(nearest + ring[None, None, :], 0, 255))
    assert rms > 1.0 and share > 0.02


def test_high_frequency_energy_separates_smooth_from_invented_detail():
    lr = _edges(1)
    smooth = resize_bicubic(torch.from_numpy(lr / 255).float()[None], (128, 128), quantize=False)[0].numpy() * 255
    noisy = smooth + np.random.default_rng(2).normal(0, 8.0, smooth.shape)
    low, high = high_frequency_energy(smooth, 4, 4), high_frequency_energy(noisy, 4, 4)
    assert 0.0 <= low < high <= 100.0
    scores = artefact_scores(lr, np.clip(noisy, 0, 255))
    assert scores.hf_energy_pct == high_frequency_energy(np.clip(noisy, 0, 255), 4, 4)
