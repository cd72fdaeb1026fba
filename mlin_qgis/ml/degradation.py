"""How low-resolution inputs are made: the clean bicubic resize, a random training degradation, and
the fixed evaluation suite.

Real rasters are rarely a clean antialiased bicubic downsample: sensors alias, optics blur, products
are JPEG-compressed, and there is noise. Training on the clean resize alone gives a model that is
worse than bicubic on such inputs, so training draws, per crop, a chain in the order a real product
is made (Real-ESRGAN/BSRGAN use the same order; this is our own, smaller version):

    optional Gaussian blur (isotropic or anisotropic, sigma tied to the scale)
    -> downsampling by one of several kernels (some of them aliasing)
    -> optional noise (Gaussian or signal-dependent) -> optional JPEG -> 8-bit rounding

Everything is drawn from a numpy Generator passed in, so a crop's degradation is fixed by its seed
(a resumed run or a rerun evaluation sees the same pixels)."""
from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mlin_qgis.core.errors import ConfigError
from mlin_qgis.ml.resize import resize_bicubic

# Downsampling kernels. "bicubic" is THE project resize (antialiased); the others do not prefilter,
# so they alias the way a sharp sensor does ("area" integrates over each LR pixel's footprint).
DOWNSAMPLERS = ("bicubic", "bicubic-aliased", "bilinear", "area", "nearest")


@dataclass
class DegradationConfig:
    """Probabilities and ranges of the training degradation (the `degradation:` config block).

    `p_clean` of the crops get today's clean antialiased bicubic and nothing else, so the model keeps
    its quality on clean inputs. The rest draw each step independently."""

    enabled: bool = True
    p_clean: float = 0.25
    # Relative weights of the downsampling kernels (normalised; a kernel with weight 0 is never used).
    downsample: Dict[str, float] = field(default_factory=lambda: {
        "bicubic": 0.3, "bicubic-aliased": 0.3, "bilinear": 0.15, "area": 0.15, "nearest": 0.1})
    p_blur: float = 0.4
    # Gaussian sigma in HR pixels = U(lo, hi) * scale: the optics' blur grows with the ground footprint
    # of an LR pixel (sigma ~0.5 * scale is about what a sensor's pixel integrates).
    blur_sigma: Tuple[float, float] = (0.1, 0.7)
    p_anisotropic: float = 0.5  # of blurred crops: two sigmas drawn independently, random rotation
    p_noise: float = 0.4
    noise_sigma: Tuple[float, float] = (1.0, 8.0)  # Gaussian, in 8-bit DN
    p_signal_dependent: float = 0.5  # of noisy crops: variance proportional to intensity (shot noise)
    p_jpeg: float = 0.4
    jpeg_quality: Tuple[int, int] = (30, 95)

    def __post_init__(self) -> None:
        for name in ("p_clean", "p_blur", "p_anisotropic", "p_noise", "p_signal_dependent", "p_jpeg"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"degradation.{name} must be a probability in [0, 1], got {value}")
        unknown = set(self.downsample) - set(DOWNSAMPLERS)
        if unknown:
            raise ConfigError(f"degradation.downsample has unknown kernels {sorted(unknown)}; "
                             f"choose from: {', '.join(DOWNSAMPLERS)}")
        if any(w < 0 for w in self.downsample.values()) or sum(self.downsample.values()) <= 0:
            raise ConfigError("degradation.downsample weights must be >= 0 with a positive sum")
        self.blur_sigma = _range(self.blur_sigma, "blur_sigma", 0.0)
        self.noise_sigma = _range(self.noise_sigma, "noise_sigma", 0.0)
        lo, hi = _range(self.jpeg_quality, "jpeg_quality", 1.0)
        if hi > 100:
            raise ConfigError(f"degradation.jpeg_quality must lie in [1, 100], got {self.jpeg_quality}")
        self.jpeg_quality = (int(lo), int(hi))

    @classmethod
    def from_dict(cls, data: Optional[Dict[str, Any]]) -> "DegradationConfig":
        known = set(asdict(cls()))
        unknown = set(data or {}) - known
        if unknown:
            raise ConfigError(f"unknown degradation keys: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        return cls(**(data or {}))


def _range(value: Any, name: str, low: float) -> Tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"degradation.{name} must be two numbers [lo, hi], got {value!r}") from None
    if not (low <= lo <= hi):
        raise ConfigError(f"degradation.{name} must satisfy {low:g} <= lo <= hi, got {value!r}")
    return lo, hi


# ---- the steps ------------------------------------------------------------------------------------

def gaussian_kernel(sigma_y: float, sigma_x: float, theta: float = 0.0) -> torch.Tensor:
    """A normalised 2-D Gaussian (odd size, 3 sigma each side), rotated by theta radians."""
    radius = max(1, int(math.ceil(3.0 * max(sigma_y, sigma_x))))
    ax = torch.arange(-radius, radius + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * xx + s * yy, -s * xx + c * yy
    k = torch.exp(-0.5 * ((u / max(sigma_x, 1e-3)) ** 2 + (v / max(sigma_y, 1e-3)) ** 2))
    return (k / k.sum()).float()


def blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve (B,C,H,W) with one 2-D kernel per channel, reflecting at the borders."""
    pad = kernel.shape[-1] // 2
    if pad >= min(x.shape[-2:]):
        raise ConfigError(f"blur kernel of radius {pad} is too large for a {tuple(x.shape[-2:])} image")
    c = x.shape[1]
    weight = kernel.to(x.dtype).expand(c, 1, *kernel.shape)
    return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), weight, groups=c)


def downsample(x: torch.Tensor, size: Tuple[int, int], kernel: str) -> torch.Tensor:
    """(B,C,H,W) floats -> `size` with the named kernel (unclamped, unrounded)."""
    if kernel == "bicubic":
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
    if kernel == "bicubic-aliased":
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=False)
    if kernel == "bilinear":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
    if kernel == "area":
        return F.interpolate(x, size=size, mode="area")
    if kernel == "nearest":
        return F.interpolate(x, size=size, mode="nearest-exact")
    raise ConfigError(f"unknown downsampling kernel '{kernel}'; choose one of: {', '.join(DOWNSAMPLERS)}")


def add_noise(x: torch.Tensor, sigma_dn: float, signal_dependent: bool, seed: int) -> torch.Tensor:
    """Gaussian noise of `sigma_dn` 8-bit DN; signal-dependent noise has that sigma at mid-grey and a
    variance proportional to intensity (like photon shot noise)."""
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(x.shape, generator=gen, dtype=x.dtype) * (sigma_dn / 255.0)
    if signal_dependent:
        noise = noise * torch.sqrt(x.clamp(0.0, 1.0) / 0.5)
    return x + noise


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Round-trip each (3,H,W) image of a batch through an in-memory JPEG (PIL, 4:2:0 chroma)."""
    out = []
    for img in x:
        arr = (img.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        dec = np.asarray(Image.open(buf).convert("RGB"))
        out.append(torch.from_numpy(dec.copy()).permute(2, 0, 1).float().div(255.0))
    return torch.stack(out).to(x.dtype)


def quantise(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


# ---- a drawn chain ------------------------------------------------------------------------------

@dataclass
class Degradation:
    """One concrete chain of steps (what a crop or an evaluation image gets)."""

    kernel: str = "bicubic"
    blur_sigma: Optional[Tuple[float, float, float]] = None  # (sigma_y, sigma_x, theta) in HR px
    noise_sigma: float = 0.0
    signal_dependent: bool = False
    noise_seed: int = 0
    jpeg_quality: Optional[int] = None

    def apply(self, hr: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """(B,C,H,W) or (C,H,W) floats in [0,1] -> LR of `size`, 8-bit rounded."""
        batched = hr if hr.dim() == 4 else hr.unsqueeze(0)
        x = batched.float()
        if self.blur_sigma is not None:
            x = blur(x, gaussian_kernel(*self.blur_sigma))
        if tuple(x.shape[-2:]) != tuple(size):
            x = downsample(x, (int(size[0]), int(size[1])), self.kernel)
        x = x.clamp(0.0, 1.0)
        if self.noise_sigma > 0:
            x = add_noise(x, self.noise_sigma, self.signal_dependent, self.noise_seed).clamp(0.0, 1.0)
        x = jpeg(x, self.jpeg_quality) if self.jpeg_quality is not None else quantise(x)
        return x if hr.dim() == 4 else x.squeeze(0)

    def describe(self) -> str:
        parts = []
        if self.blur_sigma is not None:
            sy, sx, th = self.blur_sigma
            parts.append(f"blur({sy:.2f},{sx:.2f},{math.degrees(th):.0f}deg)")
        parts.append(self.kernel)
        if self.noise_sigma > 0:
            parts.append(f"{'shot' if self.signal_dependent else 'gauss'}-noise({self.noise_sigma:.1f}DN)")
        if self.jpeg_quality is not None:
            parts.append(f"jpeg(q{self.jpeg_quality})")
        return " > ".join(parts)


def draw(rng: np.random.Generator, scale: float, cfg: DegradationConfig) -> Degradation:
    """A random chain for one crop at `scale` (always the same number of draws, so the crop's other
    random choices do not depend on which steps were taken)."""
    u = rng.random(8)
    kernels = [k for k in DOWNSAMPLERS if cfg.downsample.get(k, 0.0) > 0]
    weights = np.array([cfg.downsample[k] for k in kernels], dtype=np.float64)
    kernel = kernels[int(np.searchsorted(np.cumsum(weights / weights.sum()), u[1], side="right").clip(0, len(kernels) - 1))]
    s1, s2 = rng.uniform(*cfg.blur_sigma, size=2) * scale
    theta = float(rng.uniform(0, math.pi))
    noise = float(rng.uniform(*cfg.noise_sigma))
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    noise_seed = int(rng.integers(2**31))
    if u[0] < cfg.p_clean:
        return Degradation()
    chain = Degradation(kernel=kernel, noise_seed=noise_seed)
    if u[2] < cfg.p_blur:
        iso = u[3] >= cfg.p_anisotropic
        chain.blur_sigma = (float(s1), float(s1 if iso else s2), 0.0 if iso else theta)
    if u[4] < cfg.p_noise:
        chain.noise_sigma = noise
        chain.signal_dependent = bool(u[5] < cfg.p_signal_dependent)
    if u[6] < cfg.p_jpeg:
        chain.jpeg_quality = quality
    return chain


# ---- the evaluation suite -------------------------------------------------------------------------

def _fixed(chain: Degradation) -> Callable[[float, int], Degradation]:
    return lambda scale, seed: Degradation(**{**asdict(chain), "noise_seed": seed})


def _blurred(scale: float, seed: int) -> Degradation:
    # Optics blur then a sharp sensor: Gaussian sigma 0.6 * scale HR px, bicubic without prefilter.
    return Degradation(kernel="bicubic-aliased", blur_sigma=(0.6 * scale, 0.6 * scale, 0.0))


def _mixed(scale: float, seed: int) -> Degradation:
    # The module's default (broad) mix without its clean share, drawn per image from a fixed seed.
    return draw(np.random.default_rng([20261201, seed]), scale, DegradationConfig(p_clean=0.0))


SUITE: Dict[str, Callable[[float, int], Degradation]] = {
    "bicubic": _fixed(Degradation()),
    "bicubic-aliased": _fixed(Degradation(kernel="bicubic-aliased")),
    "blur": _blurred,
    "jpeg": _fixed(Degradation(jpeg_quality=75)),
    "noise": _fixed(Degradation(noise_sigma=5.0)),
    "mixed": _mixed,
}
SUITE_DESCRIPTIONS: Dict[str, str] = {
    "bicubic": "antialiased bicubic, 8-bit (the clean protocol)",
    "bicubic-aliased": "bicubic without antialiasing, 8-bit (a sharp, aliasing sensor)",
    "blur": "Gaussian blur sigma 0.6*s HR px, then bicubic without antialiasing, 8-bit",
    "jpeg": "antialiased bicubic, then JPEG quality 75 (PIL, 4:2:0)",
    "noise": "antialiased bicubic, then Gaussian noise sigma 5 DN, 8-bit",
    "mixed": "one random chain per image from the module's default mix without its clean share (the broad "
             "first training mix: blur, five kernels, noise up to 8 DN, JPEG 30-95), fixed seed per image",
}


def suite_names() -> List[str]:
    return list(SUITE)


def suite_degradation(name: str, scale: float, seed: int) -> Degradation:
    """The evaluation suite's chain `name` for one image (seed = the image's index)."""
    try:
        return SUITE[name](scale, seed)
    except KeyError:
        raise ConfigError(f"unknown degradation '{name}'; choose one of: {', '.join(SUITE)}") from None


def make_lr(hr: torch.Tensor, size: Tuple[int, int], chain: Degradation) -> torch.Tensor:
    """LR of `size` from HR floats by a chain; the clean chain is exactly `resize_bicubic`."""
    if chain == Degradation(noise_seed=chain.noise_seed):
        return resize_bicubic(hr, size)
    return chain.apply(hr, size)
