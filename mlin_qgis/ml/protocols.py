"""The evaluation protocols: how an image becomes an (HR, LR, border) triple, fixed so numbers compare.

Protocol "mlin" (the default; fixed, so numbers from different runs and methods compare):
  HR  = the image cropped at the top-left so H and W are multiples of int(s);
  LR  = the degradation `--degradation NAME` of HR to (round(H/s), round(W/s)) (degradation.py's
        suite; "bicubic" = resize_bicubic: antialiased, quantised to 8 bit; halves round up);
  SR  = model.super_resolve(LR, (H, W));  bicubic = resize_bicubic(LR, (H, W), quantize=False);
  PSNR / SSIM on RGB in [0,1] with SR clipped and ceil(s) pixels shaved per border; mean over images.

Protocol "funsr" (FunSR, Chen et al., TGRS 2023, for comparison with published tables):
  HR  = the centre crop of int(48 s) px (zero-padded where larger than the image);
  LR  = torch bicubic resize of the float HR to 48x48, without antialiasing and without rounding;
  PSNR on RGB in [0,1], SR clipped, border s + 5 for s <= 5 and int((s - 5) / 2 * 48) above.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from mlin_qgis.core.errors import ConfigError
from mlin_qgis.ml.degradation import SUITE_DESCRIPTIONS, make_lr, suite_degradation
from mlin_qgis.ml.resize import resize_bicubic

PROTOCOLS = ("mlin", "funsr")
FUNSR_LR = 48


def scale_key(scale: float) -> str:
    """Stable text key of a scale ("2", "2.5") for JSON and table headers."""
    return f"{scale:g}"


def parse_scales(text: str | list[float] | tuple[float, ...]) -> list[float]:
    """Parse "2,2.5,4" into floats > 1 (duplicates dropped, order kept)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    scales: list[float] = []
    for item in items:
        try:
            value = float(item.strip() if isinstance(item, str) else item)
        except (TypeError, ValueError):
            raise ConfigError(f"scale {item!r} is not a number; give scales like 2,2.5,4") from None
        if not math.isfinite(value) or value <= 1.0:
            raise ConfigError(f"scale {item!r} must be a finite number greater than 1 (super-resolution upscales)")
        if value not in scales:
            scales.append(value)
    if not scales:
        raise ConfigError("no scales given; pass e.g. --scales 2,3,4")
    return scales


def protocol_sizes(height: int, width: int, scale: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """(HR crop size, LR size) of an image of height x width at `scale` under the protocol."""
    step = int(scale)
    hr = (height - height % step, width - width % step)
    lr = (int(math.floor(hr[0] / scale + 0.5)), int(math.floor(hr[1] / scale + 0.5)))
    return hr, lr


def funsr_pair(full: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(HR, LR, border) of one (1,3,H,W) image under the FunSR protocol."""
    size = int(FUNSR_LR * scale)
    _, c, h, w = full.shape
    hr = torch.zeros((1, c, size, size), dtype=full.dtype)
    # centre crop where the image is larger, centred zero padding where it is smaller
    sy, sx = max(0, (h - size) // 2), max(0, (w - size) // 2)
    dy, dx = max(0, (size - h) // 2), max(0, (size - w) // 2)
    ch, cw = min(size, h), min(size, w)
    hr[:, :, dy:dy + ch, dx:dx + cw] = full[:, :, sy:sy + ch, sx:sx + cw]
    lr = F.interpolate(hr, size=(FUNSR_LR, FUNSR_LR), mode="bicubic", align_corners=False, antialias=False)
    border = int(scale + 5) if scale <= 5 else int((scale - 5) / 2 * FUNSR_LR)
    return hr, lr, border


def bicubic_baseline(lr: torch.Tensor, size: tuple[int, int], protocol: str) -> torch.Tensor:
    """The bicubic row: the project's resize, or (funsr) plain torch bicubic, whose kernel (a = -0.75)
    differs from the antialiased one's (a = -0.5) even when upsampling."""
    if protocol == "funsr":
        return F.interpolate(lr, size=size, mode="bicubic", align_corners=False).clamp(0.0, 1.0)
    return resize_bicubic(lr, size, quantize=False)


def protocol_pair(full: torch.Tensor, scale: float, index: int, protocol: str,
                  degradation: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(HR, LR, border to shave) of image number `index` under a protocol and degradation."""
    if protocol == "funsr":
        return funsr_pair(full, scale)
    (h, w), lr_size = protocol_sizes(full.shape[-2], full.shape[-1], scale)
    hr = full[:, :, :h, :w]
    return hr, make_lr(hr, lr_size, suite_degradation(degradation, scale, index)), math.ceil(scale)


def check_protocol(protocol: str, degradation: str) -> None:
    """Refuse an unknown protocol or degradation before anything slow runs."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol '{protocol}'; choose one of: {', '.join(PROTOCOLS)}")
    if protocol == "funsr" and degradation != "bicubic":
        raise ConfigError("the funsr protocol makes its own LR (bicubic without antialiasing); "
                         "leave --degradation out with --protocol funsr")
    suite_degradation(degradation, 2.0, 0)  # an unknown name fails here


def first_per_class(images: list[Path], count: int) -> list[Path]:
    """The first `count` images of each class folder: a subset that keeps every land-use class."""
    if count < 1:
        raise ConfigError(f"per-class count must be at least 1, got {count}")
    seen: dict[str, int] = {}
    keep = []
    for path in images:
        n = seen.get(path.parent.name, 0)
        if n < count:
            keep.append(path)
        seen[path.parent.name] = n + 1
    return keep


PROTOCOL_TEXT: dict[str, Callable[[str], dict[str, Any]]] = {
    "mlin": lambda degradation: {
        "name": "mlin",
        "hr": "top-left crop to multiples of int(s)",
        "lr": f"degradation '{degradation}' of HR to round_half_up(H/s, W/s): {SUITE_DESCRIPTIONS[degradation]}",
        "bicubic_baseline": "resize_bicubic(LR, (H, W), quantize=False)",
        "metrics": "RGB in [0,1], SR clipped, shave ceil(s); SSIM gaussian sigma 1.5, population covariance",
    },
    "funsr": lambda degradation: {
        "name": "funsr",
        "hr": "centre crop of int(48 s) px, zero-padded where larger than the image",
        "lr": "torch bicubic resize of the float HR to 48x48, no antialiasing, no rounding",
        "bicubic_baseline": "torch bicubic upsampling of LR to int(48 s), clipped",
        "metrics": "RGB in [0,1], SR clipped, border s + 5 (s <= 5) or int((s - 5) / 2 * 48)",
    },
}
