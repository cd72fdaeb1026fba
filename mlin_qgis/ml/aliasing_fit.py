"""Train the router's aliasing detector (mlin_qgis.core.aliasing_detector) on training images.

Each example is a random crop of a UC Merced TRAIN image made low-resolution (32x32) at a random
scale (log-uniform x1.2-x8) by the router fit's chains (``router_fit.labelled_chain``: a third clean,
a third sharp, a third a broad mix). With ``outputs=1`` the target is "made without an antialiasing
filter" (the sharp class; binary cross-entropy on the mean logit); with ``outputs=3`` it is the chain's
class itself (clean, sharp, other; cross-entropy on the three mean logits), so the router can also
tell a clean downsample. Adam with a one-cycle schedule. Deterministic per
seed on one thread; ~15 min on one CPU core. Val is never read.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from mlin_qgis.core.aliasing_detector import AliasingDetector
from mlin_qgis.ml.degradation import make_lr
from mlin_qgis.ml.images import list_images, load_image

log = logging.getLogger(__name__)


@dataclass
class DetectorFitConfig:
    steps: int = 6000
    batch_size: int = 32
    lr_side: int = 32
    max_lr: float = 2e-3
    scale_min: float = 1.2
    scale_max: float = 8.0
    channels: tuple[int, ...] = (16, 32, 32)
    seed: int = 1
    outputs: int = 1  # 1: sharp or not; 3: clean / sharp / other (router_fit.CLASSES)


class DetectorNet(nn.Module):
    """The torch twin of AliasingDetector (same layers, same input mapping)."""

    def __init__(self, channels: Sequence[int] = (16, 32, 32), outputs: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = 1
        for c in channels:
            layers += [nn.Conv2d(prev, c, 3), nn.ReLU()]
            prev = c
        layers.append(nn.Conv2d(prev, outputs, 1))
        self.body = nn.Sequential(*layers)
        self.outputs = outputs

    def forward(self, y01: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) luminance in [0, 1] -> (B,) mean logits, or (B, 3) with three outputs."""
        z = self.body(y01 * 4.0 - 2.0).mean(dim=(2, 3))
        return z[:, 0] if self.outputs == 1 else z

    def to_detector(self) -> AliasingDetector:
        convs = [m for m in self.body if isinstance(m, nn.Conv2d)]
        return AliasingDetector(weights=[c.weight.detach().cpu().numpy().astype(np.float32) for c in convs],
                                biases=[c.bias.detach().cpu().numpy().astype(np.float32) for c in convs])


def luminance01(lr: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB in [0, 1] -> (1, H, W) luminance, the same weights as core.router.luminance."""
    return (0.299 * lr[0] + 0.587 * lr[1] + 0.114 * lr[2])[None]


def make_batch(images: list[torch.Tensor], rng: np.random.Generator, cfg: DetectorFitConfig,
               n: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """n LR crops (n, 1, side, side), their labels (index in router_fit.CLASSES) and scales."""
    from mlin_qgis.ml.router_fit import CLASSES, RouterFitConfig, labelled_chain

    chains_cfg = RouterFitConfig()
    side = cfg.lr_side
    xs, ys, ss = [], [], []
    for _ in range(n):
        scale = float(math.exp(rng.uniform(math.log(cfg.scale_min), math.log(cfg.scale_max))))
        img = images[int(rng.integers(len(images)))]
        hr_side = min(min(img.shape[1:]), int(round(side * scale)))
        scale = hr_side / side
        r = int(rng.integers(0, img.shape[1] - hr_side + 1))
        c = int(rng.integers(0, img.shape[2] - hr_side + 1))
        name, chain = labelled_chain(rng, scale, chains_cfg)
        lr = make_lr(img[None, :, r:r + hr_side, c:c + hr_side], (side, side), chain)[0]
        xs.append(luminance01(lr))
        ys.append(CLASSES.index(name))
        ss.append(scale)
    return torch.stack(xs), torch.tensor(ys), np.array(ss)


def detector_loss(logits: torch.Tensor, labels: torch.Tensor, outputs: int) -> torch.Tensor:
    if outputs == 1:
        from mlin_qgis.ml.router_fit import CLASSES

        return nn.functional.binary_cross_entropy_with_logits(logits, (labels == CLASSES.index("sharp")).float())
    return nn.functional.cross_entropy(logits, labels)


def fit_detector(data_root: str, cfg: DetectorFitConfig | None = None, progress: bool = True) -> AliasingDetector:
    cfg = cfg or DetectorFitConfig()
    torch.set_num_threads(1)  # deterministic per seed (and leaves the other core free)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    images = [torch.from_numpy(load_image(p)).permute(2, 0, 1).float().div_(255.0) for p in list_images(data_root)]
    net = DetectorNet(cfg.channels, cfg.outputs)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.max_lr / 25)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.max_lr, total_steps=cfg.steps)
    running = None
    for step in range(cfg.steps):
        x, y, _ = make_batch(images, rng, cfg, cfg.batch_size)
        loss = detector_loss(net(x), y, cfg.outputs)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if progress and (step + 1) % 500 == 0:
            log.info("aliasing detector: step %d / %d, loss %.3f", step + 1, cfg.steps, running)
    net.eval()
    return net.to_detector()
