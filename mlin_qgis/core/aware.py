"""The degradation-aware model at run time: one code per raster, one set of mixed weights, one pass.

A degradation-aware model folder holds, besides its ``encoder.onnx``/``decoder.onnx`` pair:

- ``estimator.onnx``: LR window (1, 3, h, w) in [0, 1] -> per-position logits (1, 4, h', w') of the
  scores in CODE_NAMES;
- ``experts.npz``: for every weight of the pair, the K expert values (``encoder/<initializer>``,
  ``decoder/<initializer>``, float16), the gate (``gate/weight`` (K, 4), ``gate/bias`` (K,)) and, from
  0.10.0, ``estimator/pooling`` (4,): per score, the share of positions whose logits make it.

The code is estimated ONCE per raster, from windows spread over the whole raster (never only the
area of interest, a tile, a cluster block or a preview window), so every part of a run and every
preview of that raster uses the same weights. The code travels in the engine spec
(``FOLDER#code=a,b,c,d``), so cluster workers rebuild exactly the same engine; it is written into the
output's metadata, and a user can override it (``--input-looks``)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .devices import import_onnxruntime
from .errors import ConfigError, MlinError

log = logging.getLogger(__name__)

EXPERTS_FILE = "experts.npz"
ESTIMATOR_FILE = "estimator.onnx"
CODE_SEP = "#code="
CODE_NAMES: tuple[str, ...] = ("aliasing", "blur", "noise", "compression")
# What --input-looks names, as codes; "auto" estimates the code from the raster.
LOOKS: dict[str, tuple[float, float, float, float]] = {
    "clean": (0.0, 0.0, 0.0, 0.0),
    "sharp": (1.0, 0.0, 0.0, 0.0),
    "compressed": (0.0, 0.0, 0.0, 0.5),
    "noisy": (0.0, 0.0, 0.6, 0.0),
    "blurred": (0.0, 0.7, 0.0, 0.0),
}
LOOKS_HELP = ("how the input looks, which sets the model's weights: auto (estimated once from windows spread over "
              "the whole raster), clean (an antialiased downsample), sharp (an aliasing sensor), compressed (JPEG), "
              "noisy, blurred")
WINDOW_SIDE, WINDOW_COUNT = 128, 16
TOP_FRACTION = 0.2  # as ml/estimator.py's pool_logits, for models whose experts.npz has no estimator/pooling


def is_aware_dir(folder: Path) -> bool:
    return (folder / EXPERTS_FILE).is_file() and (folder / ESTIMATOR_FILE).is_file()


def check_looks(looks: str | None) -> str:
    name = (looks or "auto").strip().lower()
    if name != "auto" and name not in LOOKS:
        raise ConfigError(f"unknown --input-looks {looks!r}; choose one of: auto, {', '.join(LOOKS)}.")
    return name


# ---- specs ------------------------------------------------------------------------------------------

def code_spec(model_spec: str, code: Sequence[float]) -> str:
    """``FOLDER#code=a,b,c,d`` (4 decimals, so a run, a worker and an evaluation agree)."""
    return f"{model_spec}{CODE_SEP}{','.join(f'{float(v):.4f}' for v in code)}"


def parse_code_spec(spec: str | os.PathLike | None) -> tuple[str | os.PathLike | None, tuple[float, ...] | None]:
    """(model spec without the code, code) of a spec; the code is None when the spec has none."""
    if spec is None or CODE_SEP not in str(spec):
        return spec, None
    base, _, text = str(spec).rpartition(CODE_SEP)
    try:
        code = tuple(float(v) for v in text.split(","))
    except ValueError:
        code = ()
    if len(code) != len(CODE_NAMES) or not all(0.0 <= v <= 1.0 for v in code):
        raise ConfigError(f"cannot read the code in {spec!r}: expected {len(CODE_NAMES)} numbers in [0, 1] "
                          f"after '{CODE_SEP}' ({', '.join(CODE_NAMES)}).")
    return base, code


def code_text(code: Sequence[float]) -> str:
    return ", ".join(f"{n} {float(v):.2f}" for n, v in zip(CODE_NAMES, code))


# ---- the experts ------------------------------------------------------------------------------------

_experts_cache: dict[tuple[str, int], dict[str, np.ndarray]] = {}


def load_experts(folder: Path) -> dict[str, np.ndarray]:
    path = folder / EXPERTS_FILE
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _experts_cache:
        try:
            with np.load(path) as data:
                experts = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise MlinError(f"{path} is unreadable ({exc}); reinstall the model.") from None
        base = int(experts["format/delta_base"]) if "format/delta_base" in experts else None
        for k, stack in experts.items():
            if k.startswith(("encoder/", "decoder/")):
                stack = stack.astype(np.float32)
                if base is not None:  # the other experts are stored as differences from the base one
                    others = [i for i in range(stack.shape[0]) if i != base]
                    stack[others] += stack[base]
                experts[k] = stack
        _experts_cache[key] = experts
    return _experts_cache[key]


def mixing(folder: Path, code: Sequence[float]) -> np.ndarray:
    """The experts' weights (K,) for a code: softmax(gate(code))."""
    experts = load_experts(folder)
    logits = experts["gate/weight"].astype(np.float64) @ np.asarray(code, np.float64) + experts["gate/bias"]
    e = np.exp(logits - logits.max())
    return e / e.sum()


def mixed_initializers(folder: Path, code: Sequence[float], graph: str) -> dict[str, np.ndarray]:
    """Initializer name -> mixed float32 value for the ``graph`` ('encoder' or 'decoder')."""
    experts = load_experts(folder)
    pi = mixing(folder, code).astype(np.float32)
    prefix = graph + "/"
    out = {}
    for key, stack in experts.items():
        if key.startswith(prefix):
            out[key[len(prefix):]] = np.tensordot(pi, stack, axes=1).astype(np.float32)
    return out


def mixed_model_bytes(folder: Path, path: Path, code: Sequence[float], graph: str) -> bytes:
    """The ONNX file at ``path`` with its mixed weights written over its own, as bytes to load.

    Every mixed weight is stored raw (little-endian float32, or float16 for the large ones, ``half/...``)
    at a byte offset the export recorded (``offset/<graph>/<name>``), so the file is patched in place
    without a protobuf library.
    (onnxruntime's own initializer override is ignored by its graph optimisations, measured.)"""
    experts = load_experts(folder)
    data = bytearray(path.read_bytes())
    for name, value in mixed_initializers(folder, code, graph).items():
        key = f"offset/{graph}/{name}"
        if key not in experts:
            raise MlinError(f"{folder / EXPERTS_FILE} lacks {key}; re-export the model with `mlin export-aware`.")
        start = int(experts[key])
        half = bool(experts.get(f"half/{graph}/{name}", 0))  # large weights are stored as float16
        raw = value.astype("<f2" if half else "<f4").tobytes()
        if start < 0 or start + len(raw) > len(data):
            raise MlinError(f"{path} does not match {folder / EXPERTS_FILE}; reinstall the model.")
        data[start:start + len(raw)] = raw
    return bytes(data)


# ---- the estimate -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class InputLooks:
    """How the raster looks to the model (the code) and where that came from."""

    code: tuple[float, ...]
    source: str  # "estimated from N windows", "set by --input-looks sharp", "fallback: ..."

    def describe(self) -> str:
        return f"{code_text(self.code)} ({self.source})"


def estimator_session(folder: Path) -> Any:
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # tiny network; one thread gives the same numbers on every machine
    options.log_severity_level = 3
    return ort.InferenceSession(str(folder / ESTIMATOR_FILE), sess_options=options, providers=["CPUExecutionProvider"])


def pooling_of(folder: Path) -> tuple[float, ...]:
    """Per score, the share of positions pooled (``estimator/pooling`` in experts.npz; older models: 0.2)."""
    experts = load_experts(folder)
    if "estimator/pooling" in experts:
        return tuple(float(f) for f in experts["estimator/pooling"])
    return (TOP_FRACTION,) * len(CODE_NAMES)


def estimate_code(folder: Path, windows: list[np.ndarray]) -> tuple[float, ...]:
    """The code of a raster from windows (H, W, 3) in [0, 1]: per score j, the mean of the top pooling[j]
    of the logits of every position of every window (the estimator's own pooling, ml/estimator.py:
    evidence such as aliasing is local, so flat areas must not drown it; noise is everywhere, so it is
    pooled over all positions), then a sigmoid."""
    session = estimator_session(folder)
    maps = []
    for window in windows:
        image = np.ascontiguousarray(np.transpose(window, (2, 0, 1))[None], dtype=np.float32)
        logits = session.run(None, {"image": image})[0][0]
        maps.append(logits.reshape(len(CODE_NAMES), -1).astype(np.float64))
    every = np.concatenate(maps, axis=1)
    ordered = -np.sort(-every, axis=1)
    pooled = np.array([ordered[j, :max(1, int(round(every.shape[1] * f)))].mean()
                       for j, f in enumerate(pooling_of(folder))])
    return tuple(float(round(v, 4)) for v in 1.0 / (1.0 + np.exp(-pooled)))


def sample_windows(shape: tuple[int, int], side: int = WINDOW_SIDE,
                   count: int = WINDOW_COUNT) -> list[tuple[int, int, int, int]]:
    """Up to `count` windows (row, col, h, w) of at most `side` px spread evenly over a raster; they
    depend on the raster's size only, so every run of the same raster reads the same windows."""
    h, w = int(shape[0]), int(shape[1])
    wh, ww = min(side, h), min(side, w)
    per = max(1, int(round(np.sqrt(count))))
    rows = sorted({int(round(r)) for r in np.linspace(0, h - wh, per)})
    cols = sorted({int(round(c)) for c in np.linspace(0, w - ww, per)})
    return [(r, c, wh, ww) for r in rows for c in cols]


def looks_of_image(folder: Path, image: np.ndarray, looks: str = "auto") -> InputLooks:
    """The code of an in-memory image (H, W, 3) in [0, 1], read as a run reads a raster (evaluation)."""
    def windows(side: int, count: int, strict: bool) -> list[np.ndarray]:
        shape = (int(image.shape[0]), int(image.shape[1]))
        return [image[r:r + h, c:c + w] for r, c, h, w in sample_windows(shape, side, count)]

    return decide_looks(folder, looks, windows)


def decide_looks(folder: Path, looks: str, read_windows: Any) -> InputLooks:
    """The code for a run: named by ``looks``, or estimated from ``read_windows(side, count, strict)``
    (windows of the whole raster; strict: only windows with at least 90 % valid pixels)."""
    looks = check_looks(looks)
    if looks != "auto":
        return InputLooks(LOOKS[looks], f"set by --input-looks {looks}")
    windows = read_windows(WINDOW_SIDE, WINDOW_COUNT, True)
    if windows:
        return InputLooks(estimate_code(folder, windows), f"estimated from {len(windows)} windows of the raster")
    windows = read_windows(WINDOW_SIDE, WINDOW_COUNT, False)
    if windows:  # small or mostly masked rasters: every window, masked pixels filled as the run fills them
        return InputLooks(estimate_code(folder, windows),
                          f"estimated from {len(windows)} windows with masked pixels (few valid pixels)")
    return InputLooks(LOOKS["clean"], "fallback: no pixel to judge by, assumed clean")
