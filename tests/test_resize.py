"""The project's one resize: shape, range, quantisation and agreement with a direct interpolate."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mlin_qgis.ml.resize import resize_bicubic

try:
    from mlin_qgis.core.errors import MlinError
    USER_ERRORS: tuple[type[Exception], ...] = (MlinError,)
except ImportError:
    USER_ERRORS = (ValueError,)


def _image(b: int = 2, h: int = 40, w: int = 36) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, 3, h, w, generator=g)


def test_shape_batched_and_unbatched() -> None:
    x = _image()
    assert resize_bicubic(x, (16, 15)).shape == (2, 3, 16, 15)
    assert resize_bicubic(x[0], (16, 15)).shape == (3, 16, 15)
    torch.testing.assert_close(resize_bicubic(x[0], (16, 15)), resize_bicubic(x, (16, 15))[0])


def test_quantized_to_8bit_levels_and_range() -> None:
    x = _image()
    lr = resize_bicubic(x, (13, 11))
    assert lr.min() >= 0 and lr.max() <= 1
    levels = lr * 255
    torch.testing.assert_close(levels, torch.round(levels), rtol=0, atol=1e-4)
    up = resize_bicubic(lr, (40, 36), quantize=False)
    assert up.min() >= 0 and up.max() <= 1
    assert not torch.allclose(up * 255, torch.round(up * 255), atol=1e-3)  # really unquantised


def test_matches_antialiased_interpolate() -> None:
    x = _image()
    direct = F.interpolate(x, size=(10, 9), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    torch.testing.assert_close(resize_bicubic(x, (10, 9), quantize=False), direct)
    # antialiasing matters when downscaling: a plain bicubic differs
    plain = F.interpolate(x, size=(10, 9), mode="bicubic", align_corners=False).clamp(0, 1)
    assert (resize_bicubic(x, (10, 9), quantize=False) - plain).abs().max() > 0.05


def test_constant_image_preserved() -> None:
    x = torch.full((1, 3, 30, 30), 100 / 255)
    out = resize_bicubic(x, (7, 7))
    torch.testing.assert_close(out, torch.full((1, 3, 7, 7), 100 / 255))


def test_bad_input() -> None:
    with pytest.raises(USER_ERRORS, match="floats"):
        resize_bicubic(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), (4, 4))
    with pytest.raises(USER_ERRORS, match="positive integers"):
        resize_bicubic(torch.zeros(1, 3, 8, 8), (0, 4))
    with pytest.raises(USER_ERRORS, match="shape"):
        resize_bicubic(torch.zeros(8, 8), (4, 4))
