"""PSNR and SSIM on RGB in [0,1], with every protocol choice explicit (shave, range, SSIM window).

Reported numbers are only comparable when the protocol is fixed, so nothing here is implicit:
the caller passes the border shave (BasicSR's `crop_border`) and the data range; SR output is clipped
to the valid range first, as a saved image would be; SSIM is Wang et al.'s (Gaussian window,
sigma 1.5, population covariance), averaged over the RGB channels.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from skimage.metrics import structural_similarity

from mlin_qgis.core.errors import DataError

ArrayLike = np.ndarray | torch.Tensor


def _as_chw(x: ArrayLike, name: str) -> np.ndarray:
    """float64 (C,H,W) from numpy/torch, accepting a leading batch of 1."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise DataError(f"{name} must be (C,H,W) (or (1,C,H,W)), got shape {arr.shape}")
    return arr


def _prepare(sr: ArrayLike, hr: ArrayLike, shave: int, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    sr_a, hr_a = _as_chw(sr, "sr"), _as_chw(hr, "hr")
    if sr_a.shape != hr_a.shape:
        raise DataError(f"sr {sr_a.shape} and hr {hr_a.shape} must have the same shape")
    if int(shave) != shave or shave < 0:
        raise DataError(f"shave must be a non-negative integer, got {shave}")
    shave = int(shave)
    _, h, w = sr_a.shape
    if 2 * shave >= h or 2 * shave >= w:
        raise DataError(f"shave {shave} leaves nothing of a {h}x{w} image; use larger images")
    sr_a = np.clip(sr_a, 0.0, data_range)
    if shave:
        sr_a = sr_a[:, shave:-shave, shave:-shave]
        hr_a = hr_a[:, shave:-shave, shave:-shave]
    return sr_a, hr_a


def psnr(sr: ArrayLike, hr: ArrayLike, shave: int, data_range: float = 1.0) -> float:
    """PSNR in dB over all channels after clipping sr and shaving `shave` pixels per border; inf if equal."""
    sr_a, hr_a = _prepare(sr, hr, shave, data_range)
    mse = float(np.mean((sr_a - hr_a) ** 2))
    if mse == 0.0:
        return float("inf")
    return 10.0 * math.log10(data_range ** 2 / mse)


def ssim(sr: ArrayLike, hr: ArrayLike, shave: int) -> float:
    """Mean SSIM over RGB channels (Gaussian sigma 1.5, 11x11 window, data range 1) after clip and shave."""
    sr_a, hr_a = _prepare(sr, hr, shave, 1.0)
    if min(sr_a.shape[1:]) < 11:
        raise DataError(f"SSIM needs at least 11x11 pixels after shaving, got {sr_a.shape[1:]}")
    return float(structural_similarity(
        np.moveaxis(hr_a, 0, -1), np.moveaxis(sr_a, 0, -1), channel_axis=-1, data_range=1.0,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False))
