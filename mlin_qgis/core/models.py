"""Discovery of installed models: folders holding ``encoder.onnx`` + ``decoder.onnx``.

Models live in ``<repo>/models/<name>/`` (checkout layout) or ``<plugin>/models/<name>/`` (the
plugin zip); ``MLIN_MODELS_DIR`` (os.pathsep-separated) adds more roots, searched first. The default
model is ``mlin-robust-ucmerced`` (robust to aliasing and JPEG, see its card) when installed, else the first
one by name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .card import ModelCard
from .errors import MlinError

DEFAULT_MODEL = "mlin-robust-ucmerced"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
# Optional third file: the decoder with its hidden layers quantised to int8 (`mlin quantize`).
DECODER_INT8_FILE = "decoder.int8.onnx"
PRECISIONS = ("fp32", "int8")
ENV_MODELS_DIR = "MLIN_MODELS_DIR"


@dataclass
class ModelEntry:
    """One installed model: its folder name, its folder and its card."""

    name: str
    path: Path
    card: ModelCard


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
        try:
            card = ModelCard.from_onnx(dirs[name] / DECODER_FILE)
        except MlinError:
            continue
        entries.append(ModelEntry(name=name, path=dirs[name], card=card))
    return entries


def resolve_model(name_or_path: str | os.PathLike | None = None) -> Path:
    """The folder of a model given by name, folder, or path to its encoder/decoder ``.onnx``.

    ``None`` means the default model. Unknown names raise an MlinError that lists the choices.
    """
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
