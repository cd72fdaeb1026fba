"""Discovery of installed models: folders holding ``encoder.onnx`` + ``decoder.onnx``.

Models live in ``<repo>/models/<name>/`` (checkout layout) or ``<plugin>/models/<name>/`` (the
plugin zip); ``MLIN_MODELS_DIR`` (os.pathsep-separated) adds more roots, searched first. The default
model is ``auto`` (core/auto.py: the degradation-aware ``mlin-aware-ucmerced``, which reads how each
raster looks and sets its weights for it) when installed, else the first model by name.

A model folder may hold more than one decoder on its encoder's backbone: ``decoder.onnx`` and
variants ``decoder.<variant>.onnx`` with their ``encoder.<variant>.onnx`` (the exported encoder ends
with the decoder's first layer), each pair with its own card, named ``<folder>@<variant>`` (e.g.
``mlin-robust-ucmerced@sharp``). int8 files add ``.int8``: ``decoder.int8.onnx``,
``decoder.<variant>.int8.onnx``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .card import ModelCard
from .errors import MlinError

AUTO_MODEL = "auto"
# The degradation-aware model `auto` runs when installed (core/aware.py): one network reading its input.
AWARE_MODEL = "mlin-aware-ucmerced"
DEFAULT_MODEL = AWARE_MODEL  # listed first; by name it reads its input like `auto`
VARIANT_SEP = "@"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
# Optional third file: the decoder with its hidden layers quantised to int8 (`mlin quantize`).
DECODER_INT8_FILE = "decoder.int8.onnx"
PRECISIONS = ("fp32", "int8")
ENV_MODELS_DIR = "MLIN_MODELS_DIR"


@dataclass
class ModelEntry:
    """One installed model: its name, its folder, its card and the spec that selects it (the
    folder, ``FOLDER@variant`` for a decoder variant, ``auto`` for the default aware model)."""

    name: str
    path: Path
    card: ModelCard
    spec: str = ""

    def __post_init__(self) -> None:
        if not self.spec:
            variant = split_spec(self.name)[1]
            self.spec = str(self.path) + (f"{VARIANT_SEP}{variant}" if variant else "")


def decoder_file(variant: str | None = None, precision: str = "fp32") -> str:
    """The decoder's file name in a model folder for a variant (None: the folder's own) and precision."""
    stem = "decoder" if not variant else f"decoder.{variant}"
    return f"{stem}.int8.onnx" if precision == "int8" else f"{stem}.onnx"


def encoder_file(variant: str | None = None) -> str:
    """The encoder's file name for a variant: ``encoder.<variant>.onnx`` (a variant trains the decoder's
    first layer, which the exported encoder holds), else the folder's ``encoder.onnx``."""
    return f"encoder.{variant}.onnx" if variant else ENCODER_FILE


def split_spec(spec: str | os.PathLike) -> tuple[str, str | None]:
    """"name@variant" -> ("name", "variant"); anything else (a path, a plain name) -> (spec, None)."""
    text = str(spec)
    base, sep, variant = text.rpartition(VARIANT_SEP)
    if not sep or not base or not variant or any(ch in variant for ch in "/\\.") or Path(text).exists():
        return text, None
    return base, variant


def decoder_variants(folder: Path) -> list[str]:
    """The variants of a model folder: decoder.<variant>.onnx files other than the int8 ones."""
    out = []
    for path in sorted(folder.glob("decoder.*.onnx")):
        variant = path.name[len("decoder."):-len(".onnx")]
        if variant and "." not in variant and variant != "int8":
            out.append(variant)
    return out


def model_roots() -> list[Path]:
    """Folders searched for models, in priority order (existing ones only, no duplicates)."""
    package = Path(__file__).resolve().parents[1]
    candidates = [Path(p) for p in os.environ.get(ENV_MODELS_DIR, "").split(os.pathsep) if p]
    candidates += [package.parent / "models", package / "models"]
    roots: list[Path] = []
    for root in candidates:
        root = root.expanduser().resolve()
        if root.is_dir() and root not in roots:
            roots.append(root)
    return roots


def is_model_dir(folder: Path) -> bool:
    return (folder / ENCODER_FILE).is_file() and (folder / DECODER_FILE).is_file()


def _model_dirs() -> dict[str, Path]:
    """name -> folder; an earlier root wins when two roots hold the same name."""
    found: dict[str, Path] = {}
    for root in model_roots():
        for folder in sorted(root.iterdir()):
            if folder.is_dir() and is_model_dir(folder) and folder.name not in found:
                found[folder.name] = folder
    return found


def spec_variant(spec: str | os.PathLike | None) -> str | None:
    """The decoder variant named by a model spec (None: the folder's own decoder.onnx)."""
    if spec is None:
        return None
    path = Path(str(spec)).expanduser()
    if path.suffix.lower() == ".onnx" and path.name.startswith("decoder.") and path.name != DECODER_FILE:
        variant = path.name[len("decoder."):-len(".onnx")].removesuffix(".int8").removesuffix("int8")
        return variant or None
    return split_spec(spec)[1]


def _ordered(names: list[str]) -> list[str]:
    names = sorted(names)
    if DEFAULT_MODEL in names:
        names.remove(DEFAULT_MODEL)
        names.insert(0, DEFAULT_MODEL)
    return names


def available_models() -> list[ModelEntry]:
    """The installed models, default first.

    A folder whose card cannot be read is left out here (the list feeds menus); asking for it by
    name with :func:`resolve_model` and loading it still reports the precise problem.
    """
    dirs = _model_dirs()
    entries = []
    for name in _ordered(list(dirs)):
        for variant in [None, *decoder_variants(dirs[name])]:
            try:
                card = ModelCard.from_onnx(dirs[name] / decoder_file(variant))
            except MlinError:
                continue
            label = name if variant is None else f"{name}{VARIANT_SEP}{variant}"
            entries.append(ModelEntry(name=label, path=dirs[name], card=card))
    return entries


def resolve_model(name_or_path: str | os.PathLike | None = None) -> Path:
    """The folder of a model given by name (``name@variant`` too), folder, or path to its ``.onnx``.

    ``None`` means the default concrete model (``auto`` is resolved per raster by core/auto.py, not
    here). Unknown names and variants raise an MlinError that lists the choices.
    """
    if name_or_path is not None and str(name_or_path).strip() == AUTO_MODEL:
        raise MlinError(f"'{AUTO_MODEL}' picks a model per raster; it has no folder of its own "
                        f"(this is a bug in the caller: resolve it with core.auto first).")
    if name_or_path is not None:
        base, variant = split_spec(name_or_path)
        if variant is not None:
            folder = resolve_model(base)
            if not (folder / decoder_file(variant)).is_file():
                have = ", ".join(f"{base}{VARIANT_SEP}{v}" for v in decoder_variants(folder)) or "none"
                raise MlinError(f"model {base} has no decoder variant {variant!r} ({decoder_file(variant)}); "
                                f"its variants: {have}.")
            return folder
    dirs = _model_dirs()
    if name_or_path is None or str(name_or_path).strip() == "":
        if not dirs:
            roots = ", ".join(str(r) for r in model_roots()) or "<repo>/models"
            raise MlinError(f"no model is installed (searched {roots}); run `make export-liif` or "
                            f"set {ENV_MODELS_DIR} to a folder of models.")
        return dirs[_ordered(list(dirs))[0]]
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.suffix.lower() == ".onnx":
        folder = path.parent
        if not path.is_file():
            raise MlinError(f"model file {path} does not exist; check the path.")
        if not is_model_dir(folder):
            raise MlinError(f"{folder} must hold both {ENCODER_FILE} and {DECODER_FILE} "
                            f"(the pair written by mlin_qgis.ml.export); {path.name} alone is not enough.")
        return folder.resolve()
    if path.is_dir():
        if not is_model_dir(path):
            raise MlinError(f"{path} is not a model folder: it must hold {ENCODER_FILE} and {DECODER_FILE}.")
        return path.resolve()
    if text in dirs:
        return dirs[text]
    choices = ", ".join(_ordered(list(dirs))) or "none installed"
    raise MlinError(f"unknown model {text!r}: it is neither an installed model name nor a model folder "
                    f"or .onnx file. Installed models: {choices}.")
