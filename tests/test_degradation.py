"""The degradation model: each step does what it says, draws are deterministic, the suite is fixed."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mlin_qgis.core.errors import MlinError
from mlin_qgis.ml.data import CropSource, SamplerConfig
from mlin_qgis.ml.degradation import Degradation, DegradationConfig, draw, gaussian_kernel, make_lr, suite_degradation, suite_names
from mlin_qgis.ml.resize import resize_bicubic


def _hr(seed: int = 0, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((1, 3, size, size), generator=g)


def test_clean_chain_is_exactly_the_project_resize():
    hr = _hr()
    assert torch.equal(Degradation().apply(hr, (32, 32)), resize_bicubic(hr, (32, 32)))
    assert torch.equal(make_lr(hr, (21, 21), suite_degradation("bicubic", 3.0, 7)), resize_bicubic(hr, (21, 21)))


def test_aliased_bicubic_is_torch_bicubic_without_antialias_rounded():
    hr = _hr(1)
    expect = torch.round(F.interpolate(hr, size=(16, 16), mode="bicubic", align_corners=False,
                                       antialias=False).clamp(0, 1) * 255) / 255
    got = suite_degradation("bicubic-aliased", 4.0, 0).apply(hr, (16, 16))
    assert torch.equal(got, expect)
    # and it differs from the antialiased resize by far more than rounding on random texture
    assert (got - resize_bicubic(hr, (16, 16))).abs().mean() > 0.05


def test_area_of_an_integer_factor_is_the_block_mean():
    hr = _hr(2, 8)
    got = Degradation(kernel="area").apply(hr, (4, 4))
    block = hr.reshape(1, 3, 4, 2, 4, 2).mean(dim=(3, 5))
    assert torch.equal(got, torch.round(block * 255) / 255)


def test_nearest_picks_input_pixels():
    hr = torch.round(_hr(3, 12) * 255) / 255
    got = Degradation(kernel="nearest").apply(hr, (4, 4))
    # x3 nearest-exact takes the centre pixel of each 3x3 block
    assert torch.equal(got, hr[:, :, 1::3, 1::3])


def test_gaussian_kernel_is_normalised_and_rotates():
    k = gaussian_kernel(1.0, 1.0)
    assert abs(float(k.sum()) - 1) < 1e-6 and k.shape == (7, 7)
    assert torch.allclose(k, k.t(), atol=1e-7)
    wide = gaussian_kernel(0.5, 2.0, 0.0)  # wide along x
    assert float(wide[wide.shape[0] // 2].sum()) > float(wide[:, wide.shape[1] // 2].sum())
    turned = gaussian_kernel(0.5, 2.0, np.pi / 2)  # rotated by 90 degrees: wide along y
    assert torch.allclose(turned, wide.t(), atol=1e-6)


def test_blur_keeps_a_constant_image_and_lowers_variance():
    flat = torch.full((1, 3, 20, 20), 0.4)
    assert torch.allclose(Degradation(kernel="area", blur_sigma=(1.5, 1.5, 0.0)).apply(flat, (10, 10)),
                          torch.round(flat[..., :10, :10] * 255) / 255)
    hr = _hr(4)
    sharp = Degradation(kernel="bicubic-aliased").apply(hr, (32, 32))
    blurred = Degradation(kernel="bicubic-aliased", blur_sigma=(1.2, 1.2, 0.0)).apply(hr, (32, 32))
    assert float(blurred.std()) < 0.6 * float(sharp.std())


def test_noise_has_its_sigma_and_depends_on_signal_when_asked():
    grey = torch.full((1, 3, 128, 128), 0.5)
    noisy = Degradation(noise_sigma=5.0, noise_seed=1).apply(grey, (128, 128))
    assert abs(float((noisy - 0.5).std()) * 255 - 5.0) < 0.3
    dark = torch.full((1, 3, 128, 128), 0.08)
    shot = Degradation(noise_sigma=5.0, signal_dependent=True, noise_seed=1).apply(dark, (128, 128))
    # variance proportional to intensity: sigma at 0.08 is 5 * sqrt(0.08 / 0.5) = 2 DN
    assert abs(float((shot - 0.08).std()) * 255 - 2.0) < 0.3
    again = Degradation(noise_sigma=5.0, noise_seed=1).apply(grey, (128, 128))
    assert torch.equal(noisy, again)


def test_jpeg_equals_a_pil_round_trip_of_the_clean_lr():
    hr = _hr(5)
    clean = resize_bicubic(hr, (32, 32))
    arr = (clean[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=75)
    expect = torch.from_numpy(np.asarray(Image.open(buf).convert("RGB")).copy()).permute(2, 0, 1).float() / 255
    got = suite_degradation("jpeg", 2.0, 0).apply(hr, (32, 32))
    assert torch.equal(got[0], expect)
    assert not torch.equal(got, clean)


def test_draws_are_deterministic_and_cover_every_step():
    cfg = DegradationConfig()
    first = [draw(np.random.default_rng([0, i]), 3.0, cfg) for i in range(400)]
    again = [draw(np.random.default_rng([0, i]), 3.0, cfg) for i in range(400)]
    assert first == again
    kernels = {d.kernel for d in first}
    assert kernels == {"bicubic", "bicubic-aliased", "bilinear", "area", "nearest"}
    clean = sum(d == Degradation(noise_seed=d.noise_seed) for d in first)
    assert 0.15 * 400 < clean < 0.45 * 400  # p_clean 0.25, plus chains that drew nothing
    assert any(d.jpeg_quality is not None for d in first) and any(d.noise_sigma > 0 for d in first)
    blurred = [d.blur_sigma for d in first if d.blur_sigma is not None]
    assert blurred and all(0.1 * 3 <= min(b[:2]) and max(b[:2]) <= 0.7 * 3 for b in blurred)
    assert any(b[0] != b[1] for b in blurred) and any(b[0] == b[1] for b in blurred)
    qualities = [d.jpeg_quality for d in first if d.jpeg_quality is not None]
    assert min(qualities) >= 30 and max(qualities) <= 95


def test_crops_with_degradation_keep_the_clean_run_crops(tmp_path):
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)).save(tmp_path / f"im{k}.png")
    paths = sorted(tmp_path.glob("*.png"))
    sampler = SamplerConfig(lr_size=16, scale_max=3.0)
    clean = CropSource(paths, sampler, seed=4)
    robust = CropSource(paths, sampler, seed=4, degradation=DegradationConfig(p_clean=0.0, p_jpeg=1.0))
    for i in range(5):
        (lr_a, hr_a), (lr_b, hr_b) = clean.crop(i), robust.crop(i)
        assert torch.equal(hr_a, hr_b)
        assert lr_a.shape == lr_b.shape == (3, 16, 16)
        assert not torch.equal(lr_a, lr_b)
        assert torch.equal(robust.crop(i)[0], lr_b)


def test_suite_names_and_bad_config_errors():
    assert suite_names() == ["bicubic", "bicubic-aliased", "blur", "jpeg", "noise", "mixed"]
    with pytest.raises(MlinError, match="unknown degradation 'fog'; choose one of: bicubic"):
        suite_degradation("fog", 2.0, 0)
    with pytest.raises(MlinError, match="p_jpeg must be a probability"):
        DegradationConfig(p_jpeg=1.5)
    with pytest.raises(MlinError, match="unknown kernels \\['lanczos'\\]"):
        DegradationConfig(downsample={"lanczos": 1.0})
    with pytest.raises(MlinError, match="jpeg_quality must lie in"):
        DegradationConfig(jpeg_quality=(30, 120))
    with pytest.raises(MlinError, match="unknown degradation keys: p_fog"):
        DegradationConfig.from_dict({"p_fog": 0.1})
