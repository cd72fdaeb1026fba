"""The training monitors' measure, shared by `train` and `train-aware`: mean PSNR of fixed HR crops
under one suite degradation at one scale (a monitor of a run, not the reported evaluation)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .degradation import make_lr, suite_degradation
from .images import list_images, load_image

if TYPE_CHECKING:
    from .mixture import DegradationAwareSR

CPU = torch.device("cpu")
AWARE_MONITOR_DEGRADATIONS = ("bicubic", "bicubic-aliased", "jpeg")
SuperResolve = Callable[[torch.Tensor, Tuple[int, int]], torch.Tensor]


@torch.no_grad()
def crops_psnr(super_resolve: SuperResolve, crops: List[np.ndarray], degradation: str, scale: float,
               device: torch.device = CPU) -> float:
    """Mean PSNR (dB, ceil(scale) px shaved) of `super_resolve(lr, hr_size)` over (H, W, 3) uint8
    crops; crop i's LR is made by suite degradation `degradation` seeded with i (the same LR each call)."""
    vals = []
    for i, img in enumerate(crops):
        hr = torch.from_numpy(img).permute(2, 0, 1).float().div(255).unsqueeze(0)
        lr = make_lr(hr, (round(hr.shape[2] / scale), round(hr.shape[3] / scale)),
                     suite_degradation(degradation, scale, i)).to(device)
        hr = hr.to(device)
        sr = super_resolve(lr, (int(hr.shape[2]), int(hr.shape[3]))).clamp(0, 1)
        shave = math.ceil(scale)
        mse = F.mse_loss(sr[..., shave:-shave, shave:-shave], hr[..., shave:-shave, shave:-shave]).item()
        vals.append(10 * math.log10(1 / max(mse, 1e-12)))
    return float(np.mean(vals))


def centre_crops(paths: List[Path], count: int, size: int) -> List[np.ndarray]:
    """Centre size x size crops of `count` images spread evenly over `paths` (fixed: the same every run)."""
    if count <= 0 or not paths:
        return []
    picks = [paths[i] for i in np.linspace(0, len(paths) - 1, min(count, len(paths))).astype(int)]
    crops = []
    for p in picks:
        img = load_image(p)
        y, x = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
        crops.append(np.ascontiguousarray(img[y : y + size, x : x + size]))
    return crops


def monitor_crops(root: Optional[str], split: Optional[str], split_file: Optional[str], count: int) -> List[np.ndarray]:
    """`count` fixed 128 px centre crops of a folder's images (of one split when given); none without it."""
    if not root or not Path(root).is_dir():
        return []
    return centre_crops(list_images(root, split, split_file) if split else list_images(root), count, 128)


@torch.no_grad()
def aware_monitor(model: "DegradationAwareSR", crops: List[np.ndarray], scales: List[float],
                  device: torch.device) -> Dict[str, float]:
    """The aware model's monitor: mean PSNR per (degradation, scale) on fixed crops, with the code the
    model estimates, as a run would use it."""
    out: Dict[str, float] = {}
    was_training = model.training
    model.eval()
    for name in AWARE_MONITOR_DEGRADATIONS:
        for s in scales:
            out[f"{name}-x{s:g}"] = round(crops_psnr(model.super_resolve, crops, name, s, device), 4)
    model.train(was_training)
    return out
