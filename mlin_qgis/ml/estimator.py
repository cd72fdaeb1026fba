"""The degradation estimator: how an LR image looks (aliased, blurred, noisy, compressed), as a code.

A small fully convolutional network that maps an LR image to per-pixel logits of four degradation
scores in [0, 1]; the image's code pools the logits of all its positions (the mean of the top fifth,
`pool_logits`), and a raster's code pools all positions of windows spread across it. It is supervised with the true parameters
of the chain that made each training crop (`degradation_targets`), and the super-resolution network
is trained on its *estimate*, so the SR network learns to live with estimation errors."""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .degradation import Degradation

# The code's components, in order; each is a score in [0, 1].
CODE_NAMES: Tuple[str, ...] = ("aliasing", "blur", "noise", "compression")
HIGH_PASS_GAIN = 8.0
# The share of positions whose logits make each score (pool_logits), unless the model sets one per score.
# From chunk 3 the noise score pools every position (configs/aware_mlin.yaml `estimator_pooling`): sensor
# noise is everywhere, flat areas included; fine texture (grass, gravel at 2 cm) is not, and the top fifth
# of the positions called it noise (the drone orthophoto: noise 0.55-0.78 on clean tiles, the denoising
# expert, 3-6 dB below bicubic).
TOP_FRACTION = 0.2
ALIASING_KERNELS = {"bicubic-aliased": 1.0, "bilinear": 1.0, "nearest": 1.0, "area": 0.5, "bicubic": 0.0}


class DegradationEstimator(nn.Module):
    """conv 3x3 stack with two stride-2 steps; receptive field 19 LR px; ~60k parameters."""

    def __init__(self, width: int = 32, pooling: Sequence[float] = (TOP_FRACTION,) * len(CODE_NAMES)) -> None:
        super().__init__()
        if len(pooling) != len(CODE_NAMES) or not all(0.0 < f <= 1.0 for f in pooling):
            raise ValueError(f"pooling: {len(CODE_NAMES)} fractions in (0, 1] expected, got {list(pooling)}")
        self.pooling = tuple(float(f) for f in pooling)
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(6, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1, stride=2), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1, stride=2), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, len(CODE_NAMES), 1),
        )

    def logit_map(self, lr: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) LR in [0, 1] -> (B, 4, ceil(h/4), ceil(w/4)) logits.

        Besides the image it sees its high-pass residual (image minus its 3x3 mean), amplified: the cues
        (aliasing, JPEG blocks, noise) are a few DN, too faint for a small network to find in the image
        alone at a CPU budget (measured: without it the estimator stayed at the prior mean)."""
        x = (lr - 0.5) / 0.5
        high = (x - F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)) * HIGH_PASS_GAIN
        return self.body(torch.cat((x, high), dim=1))

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) LR in [0, 1] -> (B, 4) pooled logits (apply a sigmoid for the scores)."""
        return pool_logits(self.logit_map(lr).flatten(2), self.pooling)


def pool_logits(logits: torch.Tensor, pooling: Sequence[float] = (TOP_FRACTION,) * len(CODE_NAMES)) -> torch.Tensor:
    """(B, 4, N) per-position logits -> (B, 4): per score, the mean of its top `pooling[j]` of positions.

    The evidence is local: aliasing shows at edges, not in flat fields, which say nothing either way. A
    plain mean let the flat positions drown it (measured: aliased x2 rasters scored like clean ones);
    the upper tail keeps it. Runtime pools the same way over every window of a raster (core/aware.py)."""
    n = logits.shape[-1]
    scores = []
    for j, fraction in enumerate(pooling):
        k = max(1, int(round(n * fraction)))
        scores.append(logits[:, j].topk(k, dim=-1).values.mean(dim=-1))
    return torch.stack(scores, dim=1)


def degradation_targets(chain: Degradation, scale: float) -> torch.Tensor:
    """The true scores (4,) of the chain that made an LR crop at `scale` (HR px per LR px).

    aliasing: the kernel's lack of prefiltering, fading to 0 at x1 (nothing to alias) and removed by
    an optical blur of at least half an LR pixel; blur: mean sigma in LR px / 0.7; noise: sigma / 8 DN;
    compression: (100 - JPEG quality) / 70, 0 without JPEG."""
    alias = ALIASING_KERNELS.get(chain.kernel, 0.0) * min(1.0, max(0.0, scale - 1.0))
    blur = 0.0
    if chain.blur_sigma is not None:
        sigma_lr = 0.5 * (chain.blur_sigma[0] + chain.blur_sigma[1]) / max(scale, 1e-6)
        blur = min(1.0, sigma_lr / 0.7)
        alias *= max(0.0, 1.0 - sigma_lr / 0.5)
    noise = min(1.0, chain.noise_sigma / 8.0)
    compression = 0.0 if chain.jpeg_quality is None else min(1.0, max(0.0, (100 - chain.jpeg_quality) / 70.0))
    return torch.tensor([alias, blur, noise, compression], dtype=torch.float32)


def code_text(scores: "list[float] | torch.Tensor") -> str:
    """'aliasing 0.82, blur 0.05, noise 0.01, compression 0.10' (what metadata and logs show)."""
    values = [float(v) for v in scores]
    return ", ".join(f"{n} {v:.2f}" for n, v in zip(CODE_NAMES, values) if not math.isnan(v))
