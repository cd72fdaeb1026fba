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


class ContextBlock(nn.Module):
    """A residual pair of dilated 3x3 convolutions on the estimator's stride-4 features: evidence from
    further away (periodic fields alias over tens of pixels). The second convolution starts at zero, so a
    block added to trained weights leaves the estimator exactly as it was."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.first = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.second = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)
        for p in self.second.parameters():
            nn.init.zeros_(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.second(F.relu(self.first(x)))


class DegradationEstimator(nn.Module):
    """conv 3x3 stack with two stride-2 steps; receptive field 19 LR px; ~60k parameters. Optional
    context blocks (dilations `context`) widen it by 16 d LR px each (d=2, 4: 115 px)."""

    def __init__(self, width: int = 32, pooling: Sequence[float] = (TOP_FRACTION,) * len(CODE_NAMES),
                 context: Sequence[int] = ()) -> None:
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
        self.context = nn.ModuleList(ContextBlock(2 * w, int(d)) for d in context)

    def logit_map(self, lr: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) LR in [0, 1] -> (B, 4, ceil(h/4), ceil(w/4)) logits.

        Besides the image it sees its high-pass residual (image minus its 3x3 mean), amplified: the cues
        (aliasing, JPEG blocks, noise) are a few DN, too faint for a small network to find in the image
        alone at a CPU budget (measured: without it the estimator stayed at the prior mean)."""
        x = (lr - 0.5) / 0.5
        high = (x - F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)) * HIGH_PASS_GAIN
        features = self.body[:-1](torch.cat((x, high), dim=1))
        for block in self.context:
            features = block(features)
        return self.body[-1](features)

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


def offset_score(estimator: DegradationEstimator, name: str, offset: float) -> None:
    """Add `offset` to one score's logit at every position (so to its pooled logit), in place.

    A decision-threshold move, not training: the gate was fitted to the training mix's share of clean and
    aliased crops, and the acceptance weighs the clean and aliased cells alike. Chosen on the dev split."""
    head = estimator.body[-1]
    if not isinstance(head, nn.Conv2d) or head.bias is None:
        raise TypeError("the estimator's last layer is not a biased 1x1 convolution")
    with torch.no_grad():
        head.bias[CODE_NAMES.index(name)] += offset


def code_text(scores: "list[float] | torch.Tensor") -> str:
    """'aliasing 0.82, blur 0.05, noise 0.01, compression 0.10' (what metadata and logs show)."""
    values = [float(v) for v in scores]
    return ", ".join(f"{n} {v:.2f}" for n, v in zip(CODE_NAMES, values) if not math.isnan(v))
