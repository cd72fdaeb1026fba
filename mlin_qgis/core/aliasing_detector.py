"""A tiny fully-convolutional network that scores how aliased an LR image looks, in numpy.

The router's spectral features see aliasing only through the whole image's spectrum; at x2 an
aliased LR of a busy scene and a clean LR of a sharp one have nearly the same spectrum, and those
are exactly the images where the sharp-input decoder gains most (~2 dB). Aliasing shows locally, as
jagged, staircased edges, which a few 3x3 convolutions can see. So the router also reads this
network's mean logit (fitted in ``mlin_qgis.ml.aliasing_fit`` on training images only; its weights
live in the router file, so the router stays one JSON file and the QGIS side needs only numpy).

A detector has one output (the logit of "made without an antialiasing filter") or three (logits of
how the LR was made: clean antialiased downsample, sharp/aliased, anything else). Its features are
the mean logit, or the two mean logit differences against "anything else".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import ModelCardError

# The input is luminance in [0, 1] mapped to [-2, 2]; only the centre crop of at most this side is
# scored (the mean over a 128x128 crop is as stable as over the whole window and costs ~0.1 s).
MAX_SIDE = 128
MIN_SIDE = 16
LOGIT_FEATURE = "aliasing_detector_logit"  # the router's feature of a one-output detector


@dataclass
class AliasingDetector:
    """3x3 convolutions with ReLU between them, then a 1x1 convolution to one or three logits per
    pixel; the score is the mean logit over the (valid) pixels."""

    weights: list[np.ndarray]  # (out, in, k, k), the last one 1x1
    biases: list[np.ndarray]  # (out,)

    @property
    def outputs(self) -> int:
        return int(self.weights[-1].shape[0])

    @property
    def feature_names(self) -> tuple[str, ...]:
        """What `features` returns, in the router's feature list."""
        if self.outputs == 1:
            return (LOGIT_FEATURE,)
        return ("detector_sharp_vs_other", "detector_clean_vs_other")

    def features(self, y_dn: np.ndarray) -> np.ndarray:
        """The router's detector features of one luminance image in 8-bit DN units."""
        logits = self.mean_logits(y_dn)
        if self.outputs == 1:
            return logits
        clean, sharp, other = logits
        return np.array([sharp - other, clean - other])

    def score(self, y_dn: np.ndarray) -> float:
        """The first feature: how aliased the image looks (> 0: more likely aliased)."""
        return float(self.features(y_dn)[0])

    def mean_logits(self, y_dn: np.ndarray) -> np.ndarray:
        """Mean logit per output of one luminance image in 8-bit DN units."""
        y = np.asarray(y_dn, dtype=np.float32)
        if y.ndim != 2 or min(y.shape) < MIN_SIDE:
            raise ValueError(f"the aliasing detector needs an image of at least {MIN_SIDE}x{MIN_SIDE} px, got {y.shape}")
        h, w = min(y.shape[0], MAX_SIDE), min(y.shape[1], MAX_SIDE)
        r0, c0 = (y.shape[0] - h) // 2, (y.shape[1] - w) // 2
        x = (y[None, r0:r0 + h, c0:c0 + w] / 255.0) * 4.0 - 2.0
        for i, (wt, b) in enumerate(zip(self.weights, self.biases)):
            x = conv2d(x, wt, b)
            if i < len(self.weights) - 1:
                np.maximum(x, 0.0, out=x)
        return x.reshape(x.shape[0], -1).mean(axis=1).astype(np.float64)

    def to_json(self) -> dict[str, Any]:
        # each float32 as its shortest exact decimal (str of a float32): half the file, same weights
        def short(a: np.ndarray) -> Any:
            flat = a.astype(np.float32).ravel()  # iterating keeps numpy float32 scalars (str: shortest)
            return np.array([float(str(v)) for v in flat]).reshape(a.shape).tolist()

        return {"weights": [short(w) for w in self.weights], "biases": [short(b) for b in self.biases]}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "router") -> "AliasingDetector":
        try:
            weights = [np.asarray(w, dtype=np.float32) for w in data["weights"]]
            biases = [np.asarray(b, dtype=np.float32) for b in data["biases"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelCardError(f"{source}: the aliasing detector is not valid ({exc}); refit with `mlin fit-router`.") from exc
        channels = 1
        for w, b in zip(weights, biases):
            if w.ndim != 4 or w.shape[1] != channels or w.shape[2] != w.shape[3] or b.shape != (w.shape[0],):
                raise ModelCardError(f"{source}: the aliasing detector's layers do not chain "
                                     f"({w.shape} after {channels} channels); refit with `mlin fit-router`.")
            channels = w.shape[0]
        if not weights or channels not in (1, 3) or len(weights) != len(biases):
            raise ModelCardError(f"{source}: the aliasing detector must end in one or three output channels; "
                                 "refit with `mlin fit-router`.")
        return cls(weights=weights, biases=biases)


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """'Valid' 2-D convolution (cross-correlation, like torch's Conv2d): (C, H, W) -> (O, H-k+1, W-k+1)."""
    k = weight.shape[-1]
    if k == 1:
        out = np.tensordot(weight[:, :, 0, 0], x, axes=([1], [0]))
    else:
        windows = sliding_window_view(x, (1, k, k))[:, :, :, 0]  # (C, H', W', k, k)
        out = np.tensordot(weight, windows, axes=([1, 2, 3], [0, 3, 4]))
    return (out + bias[:, None, None]).astype(np.float32, copy=False)
