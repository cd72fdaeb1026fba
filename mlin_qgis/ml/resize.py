"""THE resize of the project: antialiased bicubic, optionally quantised to 8-bit levels.

Training pairs, the evaluation LR inputs and the bicubic baseline all come from this one function, so
the model is trained on exactly the degradation it is evaluated on and the baseline is measured the
same way. Antialiasing matches how real LR imagery integrates over the ground (and PIL/MATLAB-style
downscaling), and quantising mimics a real uint8 LR raster; without it a model could learn to exploit
sub-8-bit information that real inputs never carry.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mlin_qgis.core.errors import DataError


def resize_bicubic(x: torch.Tensor, size: tuple[int, int], quantize: bool = True) -> torch.Tensor:
    """Resize (B,C,H,W) or (C,H,W) floats in [0,1] to `size` = (h, w); clamp, and round to 1/255 steps.

    Use quantize=False for outputs that are not images on disk (e.g. the bicubic SR baseline).
    """
    if not isinstance(x, torch.Tensor):
        raise DataError(f"resize_bicubic needs a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (3, 4):
        raise DataError(f"resize_bicubic needs a (B,C,H,W) or (C,H,W) tensor, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise DataError(f"resize_bicubic needs floats in [0,1], got dtype {x.dtype}; divide uint8 by 255")
    if len(size) != 2 or any(int(v) != v or int(v) < 1 for v in size):
        raise DataError(f"resize size must be two positive integers (h, w), got {size}")
    out_size = (int(size[0]), int(size[1]))
    batched = x if x.dim() == 4 else x.unsqueeze(0)
    if tuple(batched.shape[-2:]) == out_size:
        out = batched.clone()
    else:
        out = F.interpolate(batched, size=out_size, mode="bicubic", align_corners=False, antialias=True)
    out = out.clamp_(0.0, 1.0)
    if quantize:
        out = torch.round(out * 255.0) / 255.0
    return out if x.dim() == 4 else out.squeeze(0)
