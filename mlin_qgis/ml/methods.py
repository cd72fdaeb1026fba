"""The methods `evaluate` can run, behind one interface: ``super_resolve(lr, (H, W), chunk) -> (B,3,H,W)``.

A method is given as a torch checkpoint (.pth), an exported model folder (run through the torch-free
engine, i.e. what ships), a degradation-aware model folder or ``auto`` (the code read per image, as
`sr` reads a raster), or any object with ``super_resolve`` (tests, scripts). Paths are checked before
anything slow is loaded, so a typo fails in a second rather than after a model load.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from mlin_qgis.core.errors import ConfigError

BICUBIC = "bicubic"  # the baseline's reserved name
AUTO = "auto"  # --checkpoint auto: the degradation-aware default, its code read per image (core/auto.py)


def parse_checkpoint_arg(value: str) -> tuple[str, Path]:
    """"NAME=PATH" or "PATH" (named after the file's stem)."""
    name, sep, rest = value.partition("=")
    if sep and name and "/" not in name and "\\" not in name and not Path(value).exists():
        return name, Path(rest)
    return Path(value).stem, Path(value)


class OnnxMethod:
    """An exported model folder (encoder.onnx + decoder.onnx) evaluated through the torch-free engine.

    This measures exactly what ships, and on CPU it is about 4x faster than the torch decoder; its
    output equals the torch model's to ~1e-6 (tests/test_export.py)."""

    def __init__(self, folder: str | os.PathLike, threads: int | None = None, ensemble: int = 1) -> None:
        from mlin_qgis.core.engine import SuperResolver
        from mlin_qgis.core.models import spec_variant

        path = Path(folder)
        # FOLDER/decoder.int8.onnx or FOLDER/decoder.<variant>.int8.onnx: that int8 decoder
        precision = "int8" if path.is_file() and path.name.endswith(".int8.onnx") else "fp32"
        variant = spec_variant(path) if path.is_file() else None
        spec = (f"{path.parent}@{variant}" if variant else path.parent) if path.is_file() else folder
        self.engine = SuperResolver(spec, device="cpu", threads=threads, precision=precision)
        self.folder = self.engine.model_dir
        self.ensemble = ensemble

    def super_resolve(self, lr: torch.Tensor, out_size: tuple[int, int], chunk: int = 65536) -> torch.Tensor:
        """Each image of the batch through the engine, unclipped (the metrics clip)."""
        outs = [self.engine.upscale(img.numpy().astype(np.float32), (int(out_size[0]), int(out_size[1])), clip=False,
                                    ensemble=self.ensemble) for img in lr]
        return torch.from_numpy(np.stack(outs))


class AutoMethod:
    """``auto`` (or a degradation-aware model folder): per image, the code read from the LR alone (the
    windows a run of that raster reads), then the engine with the weights mixed for it: what `sr`
    does for a raster. ``picks`` records each image's code."""

    def __init__(self, threads: int | None = None, ensemble: int = 1, folder: str | os.PathLike | None = None,
                 looks: str = "auto") -> None:
        from mlin_qgis.core.auto import aware_folder, wants_auto

        if folder is None:
            wants_auto(AUTO)  # a clear error when the aware model is not installed
        self.folder = aware_folder(folder if folder is not None else AUTO)
        if self.folder is None:
            raise ConfigError(f"{folder} is not a degradation-aware model folder (experts.npz, estimator.onnx)")
        self.threads, self.ensemble, self.looks = threads, ensemble, looks
        self.engines: dict[str, Any] = {}
        self.picks: list[str] = []

    def super_resolve(self, lr: torch.Tensor, out_size: tuple[int, int], chunk: int = 65536) -> torch.Tensor:
        """Each image with the weights mixed for its own code (one engine kept: codes rarely repeat)."""
        from mlin_qgis.core.aware import code_spec, code_text, looks_of_image
        from mlin_qgis.core.engine import SuperResolver

        assert self.folder is not None
        outs = []
        for img in lr:
            arr = img.numpy().astype(np.float32)
            looks = looks_of_image(self.folder, arr.transpose(1, 2, 0), self.looks)
            spec = code_spec(str(self.folder), looks.code)
            if spec not in self.engines:
                self.engines = {spec: SuperResolver(spec, device="cpu", threads=self.threads)}  # one at a time
            self.picks.append(code_text(looks.code))
            outs.append(self.engines[spec].upscale(arr, tuple(out_size), clip=False, ensemble=self.ensemble))
        return torch.from_numpy(np.stack(outs))


def is_aware_folder(item: Any) -> bool:
    """A degradation-aware model folder (read per image like `sr` reads a raster)."""
    if not isinstance(item, (str, os.PathLike)):
        return False
    from mlin_qgis.core.auto import aware_folder

    return Path(item).is_dir() and aware_folder(item) is not None


def is_onnx_folder(item: Any) -> bool:
    """A model folder, FOLDER@variant (its decoder.<variant>.onnx), or an int8 decoder file
    (FOLDER/decoder.int8.onnx, FOLDER/decoder.<variant>.int8.onnx: evaluated with --precision int8)."""
    if not isinstance(item, (str, os.PathLike)):
        return False
    from mlin_qgis.core.models import split_spec

    path = Path(split_spec(item)[0])
    return (path / "encoder.onnx").is_file() or (path.name.startswith("decoder.") and path.name.endswith(".int8.onnx")
                                                 and path.is_file())


def check_methods(checkpoints: Mapping[str, Any]) -> None:
    """Refuse reserved names, wrong types and missing paths before anything slow is loaded."""
    if BICUBIC in checkpoints:
        raise ConfigError(f"the name {BICUBIC!r} is reserved for the baseline; name the checkpoint otherwise")
    for name, item in checkpoints.items():
        if not hasattr(item, "super_resolve") and not isinstance(item, (str, os.PathLike)):
            raise ConfigError(f"checkpoint {name}: expected a .pth path or a model with .super_resolve, "
                             f"got {type(item).__name__}")
        if not hasattr(item, "super_resolve") and str(item) != AUTO and not Path(item).is_file() \
                and not is_onnx_folder(item):
            raise ConfigError(f"checkpoint {name}: {item} does not exist; pass the path of a .pth file "
                             "or of a model folder holding encoder.onnx and decoder.onnx")


def load_methods(checkpoints: Mapping[str, Any], ensemble: int = 1) -> dict[str, Any]:
    """Name -> object with .super_resolve; paths are checked before anything slow is loaded.

    A path is a .pth checkpoint (torch) or an exported model folder with encoder.onnx (onnxruntime)."""
    check_methods(checkpoints)
    models: dict[str, Any] = {}
    for name, item in checkpoints.items():
        if hasattr(item, "super_resolve"):
            models[name] = item
        elif str(item) == AUTO:
            models[name] = AutoMethod(threads=torch.get_num_threads(), ensemble=ensemble)
        elif is_aware_folder(item):  # a degradation-aware folder reads each image as `sr` reads a raster
            models[name] = AutoMethod(threads=torch.get_num_threads(), ensemble=ensemble, folder=item)
        elif is_onnx_folder(item):
            models[name] = OnnxMethod(item, threads=torch.get_num_threads(), ensemble=ensemble)
        else:
            from mlin_qgis.ml.model import load_model  # torch model code only when a path is given

            models[name] = load_model(Path(item))
        if hasattr(models[name], "eval"):
            models[name].eval()
    return models


def device_of(model: Any) -> torch.device:
    """Where a torch model's parameters live (CPU for engine-backed methods), so LR goes there."""
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")
