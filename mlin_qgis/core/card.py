"""The model card: everything the engine needs to know about a model travels inside its ONNX files.

Both ``encoder.onnx`` and ``decoder.onnx`` carry the card as JSON in ``metadata_props`` under the
key ``mlin_card`` (see docs/ARCHITECTURE.md). The engine hard-codes nothing about a model: input and
output normalisation, the halo a tile needs and the usable scale range all come from here.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Mapping

from .errors import ModelCardError

CARD_KEY = "mlin_card"

# Fields without which the engine cannot run a model correctly (or the UI cannot describe it).
REQUIRED_FIELDS: tuple[str, ...] = (
    "name", "version", "method", "weighting", "encoder",
    "input_mean", "input_std", "output_mean", "output_std", "bands",
    "trained_scale_min", "trained_scale_max", "recommended_max_scale", "hard_max_scale",
    "receptive_field", "feature_channels",
)
METHODS = ("mlin", "liif")
WEIGHTINGS = ("meta", "area")


def _triple(value: Any, key: str) -> tuple[float, float, float]:
    """Accept a scalar or a 3-list for per-channel statistics (cards written by hand use both)."""
    if isinstance(value, (int, float)):
        return (float(value),) * 3
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ModelCardError(f"model card field '{key}' must be a number or a list of 3 numbers, "
                        f"got {value!r}; re-export the model.") from None
    if len(values) != 3:
        raise ModelCardError(f"model card field '{key}' must have 3 values (R, G, B), got {len(values)}; "
                        "re-export the model.")
    return values


@dataclass
class ModelCard:
    """Description of an exported model (fields and meaning as in docs/ARCHITECTURE.md)."""

    name: str = ""
    version: str = ""
    method: str = "liif"
    weighting: str = "area"
    encoder: str = ""
    input_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    input_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    output_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    output_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    bands: Any = field(default_factory=lambda: ["red", "green", "blue"])
    trained_scale_min: float = 1.0
    trained_scale_max: float = 4.0
    recommended_max_scale: float = 8.0
    hard_max_scale: float = 16.0
    receptive_field: int = 0
    feature_channels: int = 0
    training_data: Any = ""
    training_budget: Any = ""
    quality: dict = field(default_factory=dict)
    licence: str = ""
    description: str = ""

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "model card") -> "ModelCard":
        """Build and validate a card; missing required fields raise one MlinError naming them all."""
        if not isinstance(data, Mapping):
            raise ModelCardError(f"{source}: the model card must be a JSON object; re-export the model.")
        missing = [k for k in REQUIRED_FIELDS if k not in data]
        if missing:
            raise ModelCardError(f"{source}: the model card lacks the field(s) {', '.join(missing)}; "
                            "re-export the model with mlin_qgis.ml.export (python -m mlin_qgis export).")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        card = cls(**kwargs)
        card._coerce(source)
        card.validate(source)
        return card

    @classmethod
    def from_json(cls, text: str, source: str = "model card") -> "ModelCard":
        """Parse the JSON stored under ``mlin_card``."""
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ModelCardError(f"{source}: the model card is not valid JSON ({exc}); re-export the model.") from None
        return cls.from_dict(data, source)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str) -> "ModelCard":
        """Card from an ONNX file's custom metadata map (as onnxruntime returns it)."""
        if CARD_KEY not in metadata:
            raise ModelCardError(f"{source} is not an mlin model: it has no '{CARD_KEY}' metadata. "
                            "Use a model exported with mlin_qgis.ml.export (python -m mlin_qgis export).")
        return cls.from_json(metadata[CARD_KEY], source)

    @classmethod
    def from_onnx(cls, path: str | Path) -> "ModelCard":
        """Read the card of one ONNX file (encoder or decoder).

        onnxruntime is preferred because QGIS's Python has it but usually not the ``onnx`` package;
        ``onnx`` is the fallback where onnxruntime is missing.
        """
        return cls.from_metadata(read_onnx_metadata(path), str(path))

    # -- checks and output --------------------------------------------------------------------
    def _coerce(self, source: str) -> None:
        """Normalise loosely typed JSON values (ints for floats, scalars for triples)."""
        for key in ("input_mean", "input_std", "output_mean", "output_std"):
            setattr(self, key, _triple(getattr(self, key), key))
        try:
            self.name = str(self.name)
            self.version = str(self.version)
            self.method = str(self.method).lower()
            self.weighting = str(self.weighting).lower()
            for key in ("trained_scale_min", "trained_scale_max", "recommended_max_scale", "hard_max_scale"):
                setattr(self, key, float(getattr(self, key)))
            for key in ("receptive_field", "feature_channels"):
                value = float(getattr(self, key))
                if value != int(value):
                    raise ValueError(f"{key} must be an integer")
                setattr(self, key, int(value))
        except (TypeError, ValueError) as exc:
            raise ModelCardError(f"{source}: the model card has a badly typed field ({exc}); re-export the model.") from None
        if self.quality is None:
            self.quality = {}

    def validate(self, source: str = "model card") -> None:
        """Refuse cards the engine cannot honour; the message says which value is wrong."""
        problems = []
        if not self.name:
            problems.append("name is empty")
        if self.method not in METHODS:
            problems.append(f"method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.weighting not in WEIGHTINGS:
            problems.append(f"weighting {self.weighting!r} is not one of {', '.join(WEIGHTINGS)}")
        for key in ("input_std", "output_std"):
            if any(not math.isfinite(v) or v == 0 for v in getattr(self, key)):
                problems.append(f"{key} must be finite and non-zero")
        if self.receptive_field < 0:
            problems.append("receptive_field must be >= 0")
        if self.feature_channels <= 0:
            problems.append("feature_channels must be > 0")
        if not (1.0 < self.recommended_max_scale <= self.hard_max_scale) or not math.isfinite(self.hard_max_scale):
            problems.append("scales must satisfy 1 < recommended_max_scale <= hard_max_scale (finite)")
        if problems:
            raise ModelCardError(f"{source}: invalid model card ({'; '.join(problems)}); re-export the model.")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("input_mean", "input_std", "output_mean", "output_std"):
            data[key] = list(data[key])
        return data

    def to_json(self) -> str:
        """The JSON stored under ``mlin_card`` (stable key order for reproducible exports)."""
        return json.dumps(self.to_dict(), sort_keys=True)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) of a protobuf message's top level; length-delimited values as bytes."""
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated field")
        yield number, value


ONNX_METADATA_PROPS = 14  # ModelProto.metadata_props: repeated StringStringEntryProto {1: key, 2: value}


def metadata_from_protobuf(data: bytes) -> dict[str, str]:
    """ONNX metadata_props read straight from the file's protobuf, with neither onnxruntime nor onnx:
    QGIS can then list the models (and their zoom limits) before onnxruntime is installed."""
    props: dict[str, str] = {}
    for number, value in _fields(data):
        if number == ONNX_METADATA_PROPS and isinstance(value, bytes):
            entry = dict(_fields(value))
            props[bytes(entry.get(1, b"")).decode("utf-8")] = bytes(entry.get(2, b"")).decode("utf-8")
    return props


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The custom metadata map of an ONNX file; MlinError when the file is missing or not ONNX.

    Read from the protobuf directly when that finds the card (fast: no session; works without
    onnxruntime); otherwise onnxruntime or onnx read it and report what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelCardError(f"model file {path} does not exist; pick an installed model or re-export it.")
    try:
        props = metadata_from_protobuf(path.read_bytes())
        if CARD_KEY in props:
            return props
    except (ValueError, UnicodeDecodeError, OSError):
        pass  # not parseable as plain protobuf: let the ONNX libraries say why
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    if ort is not None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelCardError(f"{path} is not an mlin model: onnxruntime cannot load it ({_short(exc)}). "
                            "Re-export it or pick another model.") from None
        return dict(session.get_modelmeta().custom_metadata_map)
    try:
        import onnx
    except ImportError:
        raise ModelCardError("onnxruntime is not installed in this Python; install it (pip install onnxruntime, "
                        "or onnxruntime-gpu for NVIDIA GPUs) to use mlin models.") from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelCardError(f"{path} is not an mlin model: it cannot be parsed as ONNX ({_short(exc)}).") from None
    return {p.key: p.value for p in model.metadata_props}


def _short(exc: BaseException, limit: int = 300) -> str:
    """First line of an exception, bounded: onnxruntime messages can be very long."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."
