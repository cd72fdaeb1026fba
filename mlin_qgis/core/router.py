"""Pick the decoder that suits how an input was made, from the input alone.

No single model is best on every input: a decoder trained on clean antialiased LR is the best there
and 3-4 dB worse than bicubic on LR sampled without an antialiasing filter (a sharp, aliasing
sensor); one trained on a broad mix of degradations gives up ~0.4 dB on clean LR; one trained on
aliased LR alone wins there and nowhere else. The router reads a few numbers that separate these
cases from the LR itself (no ground truth is needed) and a small softmax regression (linear or quadratic terms),
fitted on degraded training images (``mlin_qgis.ml.router_fit``, never on val), names the class;
each class names a model (``route``). Everything here is numpy: this runs inside QGIS.

Features (luminance in 8-bit DN units, whole image or a few windows of it):

* spectral shape: the log power of the row/column spectra in six bands up to Nyquist relative to a
  low band (an antialiasing filter removes the top bands; aliasing folds energy into them; blur
  removes the upper-mid ones);
* JPEG blockiness: how much stronger the steps across one of the 8 column/row phases are than
  the median phase (a JPEG grid shows as one phase);
* noise floor: the high-pass level in the flattest patches (DN) and relative to the busiest ones
  (noise is everywhere, aliasing sits on edges);
* when the router file carries one, the mean logit of a tiny convolutional aliasing detector
  (``aliasing_detector``): jagged edges are local, and at x2 the spectrum alone hardly tells an
  aliased busy scene from a clean sharp one.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .aliasing_detector import LOGIT_FEATURE, AliasingDetector
from .errors import ConfigError, ModelCardError

log = logging.getLogger(__name__)

ROUTER_FILE = "router.json"
AUTO_MODEL = "auto"
# Row/column power spectrum bands (cycles per LR pixel); the features are each band's log power
# relative to the first one (the spectral shape, not the image's contrast).
_EDGES = (0.0625, 0.125, 0.1875, 0.25, 0.3125, 0.375, 0.4375, 0.5001)
FEATURE_NAMES = (
    *(f"log_power_{lo:.3f}_{hi:.3f}_over_first" for lo, hi in zip(_EDGES[1:-1], _EDGES[2:])),
    "jpeg_blockiness", "log_noise_floor_dn", "log_noise_floor_over_busy",
)
DETECTOR_FEATURE = LOGIT_FEATURE  # the one-output detector's feature (kept for its users)
MIN_SIDE = 16


def luminance(image: np.ndarray) -> np.ndarray:
    """(H, W, C) floats in model units ([0, 1]) -> (H, W) luminance in 8-bit DN; one band is itself."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 2:
        return img * 255.0
    if img.shape[-1] >= 3:
        return (0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]) * 255.0
    return img.mean(axis=-1) * 255.0


def _band_powers(y: np.ndarray) -> np.ndarray:
    """Mean power in each band of the Hann-windowed row and column spectra (summed over both axes)."""
    out = np.zeros(len(_EDGES) - 1)
    for axis in (0, 1):
        n = y.shape[axis]
        z = y - y.mean(axis=axis, keepdims=True)
        win = np.hanning(n).reshape((-1, 1) if axis == 0 else (1, -1))
        power = (np.abs(np.fft.rfft(z * win, axis=axis)) ** 2).mean(axis=1 - axis)
        freq = np.fft.rfftfreq(n)
        for i, (lo, hi) in enumerate(zip(_EDGES[:-1], _EDGES[1:])):
            sel = (freq >= lo) & (freq < hi)
            out[i] += power[sel].mean() if sel.any() else 0.0
    return out + 1e-3


def _blockiness(y: np.ndarray) -> float:
    """log(strongest / median) mean step over the 8 phases, averaged over columns and rows."""
    values = []
    for axis in (0, 1):
        steps = np.abs(np.diff(y, axis=axis))
        profile = steps.mean(axis=1 - axis)
        if profile.size < 16:
            continue
        phases = np.array([profile[k::8].mean() for k in range(8)])
        values.append(np.log((phases.max() + 0.05) / (np.median(phases) + 0.05)))
    return float(np.mean(values)) if values else 0.0


def _noise_floor(y: np.ndarray) -> tuple[float, float]:
    """High-pass RMS (DN) in the flattest and the busiest 8x8 patches."""
    hp = y[1:-1, 1:-1] * 4 - y[:-2, 1:-1] - y[2:, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:]
    hp = hp / np.sqrt(20.0)  # unit gain for white noise
    h, w = (hp.shape[0] // 8) * 8, (hp.shape[1] // 8) * 8
    if h < 8 or w < 8:
        rms = float(np.sqrt(np.mean(hp ** 2)))
        return rms, rms
    blocks = hp[:h, :w].reshape(h // 8, 8, w // 8, 8)
    rms = np.sqrt((blocks ** 2).mean(axis=(1, 3))).ravel()
    return float(np.percentile(rms, 10)), float(np.percentile(rms, 90))


def lr_features(y: np.ndarray) -> np.ndarray:
    """The router's feature vector of one luminance image (8-bit DN units), see FEATURE_NAMES."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2 or min(y.shape) < MIN_SIDE:
        raise ConfigError(f"the router needs an image of at least {MIN_SIDE}x{MIN_SIDE} pixels, got {y.shape}")
    bands = np.log(_band_powers(y))
    flat, busy = _noise_floor(y)
    return np.array([*(bands[1:] - bands[0]), _blockiness(y), np.log(flat + 0.05),
                     np.log((flat + 0.05) / (busy + 0.05))])


def expand(z: np.ndarray, kind: str) -> np.ndarray:
    """Standardised features (N, F) -> regression terms: themselves ("linear") or also every product
    of two of them ("quadratic": the class boundaries between spectra are curved)."""
    if kind == "linear":
        return z
    iu = np.triu_indices(z.shape[1])
    return np.concatenate([z, (z[:, :, None] * z[:, None, :])[:, iu[0], iu[1]]], axis=1)


def n_terms(n_features: int, kind: str) -> int:
    return n_features if kind == "linear" else n_features + n_features * (n_features + 1) // 2


def sample_windows(shape: tuple[int, int], side: int = 256, count: int = 9) -> list[tuple[int, int, int, int]]:
    """Up to `count` windows (row, col, h, w) of at most `side` px spread evenly over a raster."""
    h, w = int(shape[0]), int(shape[1])
    wh, ww = min(side, h), min(side, w)
    per = max(1, int(round(np.sqrt(count))))
    rows = sorted({int(round(r)) for r in np.linspace(0, h - wh, per)})
    cols = sorted({int(round(c)) for c in np.linspace(0, w - ww, per)})
    return [(r, c, wh, ww) for r in rows for c in cols]


@dataclass
class Router:
    """A fitted multinomial logistic regression over FEATURE_NAMES and the model each class uses."""

    classes: list[str]
    routes: dict[str, str]
    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray  # (terms, classes)
    bias: np.ndarray  # (classes,)
    terms: str = "quadratic"
    descriptions: dict[str, str] = field(default_factory=dict)
    fitted_on: str = ""
    detector: AliasingDetector | None = None
    # "pick": the most probable class's model; "blend": every class's model whose probability is at
    # least min_weight, outputs averaged with the (renormalised) probabilities (core/blend.py)
    mixing: str = "pick"
    min_weight: float = 0.1

    @property
    def feature_names(self) -> tuple[str, ...]:
        return FEATURE_NAMES + (self.detector.feature_names if self.detector is not None else ())

    def features(self, image: np.ndarray) -> np.ndarray:
        """The feature vector (feature_names) of one image in model units."""
        y = luminance(image)
        feats = lr_features(y)
        if self.detector is None:
            return feats
        return np.append(feats, self.detector.features(y))

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        z = expand((np.atleast_2d(features) - self.mean) / self.std, self.terms) @ self.weights + self.bias
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def classify(self, image: np.ndarray) -> tuple[str, np.ndarray]:
        """The class of one image in model units, and its probabilities."""
        p = self.probabilities(self.features(image))[0]
        return self.classes[int(np.argmax(p))], p

    def classify_windows(self, images: Sequence[np.ndarray]) -> tuple[str, np.ndarray]:
        """One class for a whole raster from several of its windows: the mean of their log-probabilities
        (one decision per raster, so tiles and blocks never disagree)."""
        usable = [im for im in images if min(np.asarray(im).shape[:2]) >= MIN_SIDE]
        if not usable:
            raise ConfigError(f"the raster is smaller than {MIN_SIDE}x{MIN_SIDE} px; choose a model by name "
                              f"instead of '{AUTO_MODEL}'.")
        feats = np.stack([self.features(im) for im in usable])
        logp = np.log(self.probabilities(feats) + 1e-12).mean(axis=0)
        p = np.exp(logp - logp.max())
        p /= p.sum()
        return self.classes[int(np.argmax(p))], p

    def blend_weights(self, p: np.ndarray) -> list[tuple[str, float]]:
        """The classes a raster with class probabilities ``p`` is decoded by, and their weights (sum 1),
        heaviest first: the argmax alone when picking, else every class at or above min_weight."""
        order = [int(k) for k in np.argsort(-np.asarray(p), kind="stable")]
        if self.mixing == "pick":
            return [(self.classes[order[0]], 1.0)]
        kept = [k for k in order if p[k] >= self.min_weight] or order[:1]
        total = float(sum(p[k] for k in kept))
        return [(self.classes[k], float(p[k]) / total) for k in kept]

    def to_json(self) -> dict[str, Any]:
        data = {"format": "mlin-router/1", "features": list(self.feature_names), "classes": self.classes,
                "routes": self.routes, "terms": self.terms, "descriptions": self.descriptions, "fitted_on": self.fitted_on,
                "mean": self.mean.tolist(), "std": self.std.tolist(), "weights": self.weights.tolist(),
                "bias": self.bias.tolist(), "mixing": self.mixing,
                "min_weight": self.min_weight}
        if self.detector is not None:
            data["detector"] = self.detector.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "router") -> "Router":
        try:
            detector = AliasingDetector.from_json(data["detector"], source) if "detector" in data else None
            names = FEATURE_NAMES + (detector.feature_names if detector is not None else ())
            if data.get("format") != "mlin-router/1" or list(data["features"]) != list(names):
                raise ModelCardError(f"{source} is not a router of this version (format mlin-router/1 with "
                                     f"features {', '.join(names)}); refit it with `mlin fit-router`.")
            classes = [str(c) for c in data["classes"]]
            routes = {str(k): str(v) for k, v in data["routes"].items()}
            missing = [c for c in classes if c not in routes]
            if missing:
                raise ModelCardError(f"{source} names no model for class(es) {', '.join(missing)}.")
            router = cls(classes=classes, routes=routes, mean=np.asarray(data["mean"], float),
                         std=np.asarray(data["std"], float), weights=np.asarray(data["weights"], float),
                         bias=np.asarray(data["bias"], float), terms=str(data.get("terms", "quadratic")),
                         descriptions=dict(data.get("descriptions", {})),
                         fitted_on=str(data.get("fitted_on", "")), detector=detector,
                         mixing=str(data.get("mixing", "pick")), min_weight=float(data.get("min_weight", 0.1)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelCardError(f"{source} is not a valid router file ({exc}); refit it with `mlin fit-router`.") from exc
        if router.mixing not in ("pick", "blend") or not 0.0 <= router.min_weight < 1.0:
            raise ModelCardError(f"{source} has mixing {router.mixing!r} / min_weight {router.min_weight}; expected "
                                 "pick or blend, and a min_weight in [0, 1).")
        if router.terms not in ("linear", "quadratic"):
            raise ModelCardError(f"{source} has terms {router.terms!r}; expected linear or quadratic.")
        n, k = len(router.feature_names), len(classes)
        if router.weights.shape != (n_terms(n, router.terms), k) or router.bias.shape != (k,) or router.mean.shape != (n,) \
                or router.std.shape != (n,) or np.any(router.std <= 0):
            raise ModelCardError(f"{source} has arrays of the wrong shape for {n} features and {k} classes; "
                                 f"refit it with `mlin fit-router`.")
        return router

    @classmethod
    def load(cls, path: str | Path) -> "Router":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelCardError(f"cannot read the router {path} ({exc}); reinstall the plugin's models "
                                 f"or choose a model by name.") from exc
        return cls.from_json(data, str(path))
