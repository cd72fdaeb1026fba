"""Whole-image evaluation of SR checkpoints against the bicubic baseline, at arbitrary scales.

Protocol "mlin" (the default; fixed, so numbers from different runs and methods compare):
  HR  = the image cropped at the top-left so H and W are multiples of int(s);
  LR  = the degradation `--degradation NAME` of HR to (round(H/s), round(W/s)) (degradation.py's
        suite; "bicubic" = resize_bicubic: antialiased, quantised to 8 bit; halves round up);
  SR  = model.super_resolve(LR, (H, W));  bicubic = resize_bicubic(LR, (H, W), quantize=False);
  PSNR / SSIM on RGB in [0,1] with SR clipped and ceil(s) pixels shaved per border; mean over images.

Protocol "funsr" (FunSR, Chen et al., TGRS 2023, for comparison with published tables):
  HR  = the centre crop of int(48 s) px (zero-padded where larger than the image);
  LR  = torch bicubic resize of the float HR to 48x48, without antialiasing and without rounding;
  PSNR on RGB in [0,1], SR clipped, border s + 5 for s <= 5 and int((s - 5) / 2 * 48) above.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mlin_qgis.core.errors import ConfigError, DataError, MlinError
from mlin_qgis.ml.degradation import SUITE_DESCRIPTIONS, make_lr, suite_degradation, suite_names
from mlin_qgis.ml.images import list_images, load_image
from mlin_qgis.ml.metrics import psnr, ssim
from mlin_qgis.ml.resize import resize_bicubic

BICUBIC = "bicubic"
AUTO = "auto"  # --checkpoint auto: the router's pick per image (core/auto.py)
PROTOCOLS = ("mlin", "funsr")
FUNSR_LR = 48


@dataclass
class EvalConfig:
    """Defaults of the `evaluate` CLI."""

    scales: tuple[float, ...] = (2.0, 3.0, 4.0)
    split: str | None = None
    split_file: str | None = None
    limit: int | None = None
    out_dir: str | None = None
    chunk: int = 65536  # query points per decoder call: bounds memory on large images


def scale_key(scale: float) -> str:
    """Stable text key of a scale ("2", "2.5") for JSON and table headers."""
    return f"{scale:g}"


def parse_scales(text: str | list[float] | tuple[float, ...]) -> list[float]:
    """Parse "2,2.5,4" into floats > 1 (duplicates dropped, order kept)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    scales: list[float] = []
    for item in items:
        try:
            value = float(item.strip() if isinstance(item, str) else item)
        except (TypeError, ValueError):
            raise ConfigError(f"scale {item!r} is not a number; give scales like 2,2.5,4") from None
        if not math.isfinite(value) or value <= 1.0:
            raise ConfigError(f"scale {item!r} must be a finite number greater than 1 (super-resolution upscales)")
        if value not in scales:
            scales.append(value)
    if not scales:
        raise ConfigError("no scales given; pass e.g. --scales 2,3,4")
    return scales


def protocol_sizes(height: int, width: int, scale: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """(HR crop size, LR size) of an image of height x width at `scale` under the protocol."""
    step = int(scale)
    hr = (height - height % step, width - width % step)
    lr = (int(math.floor(hr[0] / scale + 0.5)), int(math.floor(hr[1] / scale + 0.5)))
    return hr, lr


def funsr_pair(full: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(HR, LR, border) of one (1,3,H,W) image under the FunSR protocol."""
    size = int(FUNSR_LR * scale)
    _, c, h, w = full.shape
    hr = torch.zeros((1, c, size, size), dtype=full.dtype)
    # centre crop where the image is larger, centred zero padding where it is smaller
    sy, sx = max(0, (h - size) // 2), max(0, (w - size) // 2)
    dy, dx = max(0, (size - h) // 2), max(0, (size - w) // 2)
    ch, cw = min(size, h), min(size, w)
    hr[:, :, dy:dy + ch, dx:dx + cw] = full[:, :, sy:sy + ch, sx:sx + cw]
    lr = F.interpolate(hr, size=(FUNSR_LR, FUNSR_LR), mode="bicubic", align_corners=False, antialias=False)
    border = int(scale + 5) if scale <= 5 else int((scale - 5) / 2 * FUNSR_LR)
    return hr, lr, border


def bicubic_baseline(lr: torch.Tensor, size: tuple[int, int], protocol: str) -> torch.Tensor:
    """The bicubic row: the project's resize, or (funsr) plain torch bicubic, whose kernel (a = -0.75)
    differs from the antialiased one's (a = -0.5) even when upsampling."""
    if protocol == "funsr":
        return F.interpolate(lr, size=size, mode="bicubic", align_corners=False).clamp(0.0, 1.0)
    return resize_bicubic(lr, size, quantize=False)


def protocol_pair(full: torch.Tensor, scale: float, index: int, protocol: str,
                  degradation: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(HR, LR, border to shave) of image number `index` under a protocol and degradation."""
    if protocol == "funsr":
        return funsr_pair(full, scale)
    (h, w), lr_size = protocol_sizes(full.shape[-2], full.shape[-1], scale)
    hr = full[:, :, :h, :w]
    return hr, make_lr(hr, lr_size, suite_degradation(degradation, scale, index)), math.ceil(scale)


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
        outs = [self.engine.upscale(img.numpy().astype(np.float32), tuple(out_size), clip=False,
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


def _is_aware_folder(item: Any) -> bool:
    if not isinstance(item, (str, os.PathLike)):
        return False
    from mlin_qgis.core.auto import aware_folder

    return Path(item).is_dir() and aware_folder(item) is not None


def _is_onnx_folder(item: Any) -> bool:
    """A model folder, FOLDER@variant (its decoder.<variant>.onnx), or an int8 decoder file
    (FOLDER/decoder.int8.onnx, FOLDER/decoder.<variant>.int8.onnx: evaluated with --precision int8)."""
    if not isinstance(item, (str, os.PathLike)):
        return False
    from mlin_qgis.core.models import split_spec

    path = Path(split_spec(item)[0])
    return (path / "encoder.onnx").is_file() or (path.name.startswith("decoder.") and path.name.endswith(".int8.onnx")
                                                 and path.is_file())


def _load_methods(checkpoints: Mapping[str, Any], ensemble: int = 1) -> dict[str, Any]:
    """Name -> object with .super_resolve; paths are checked before anything slow is loaded.

    A path is a .pth checkpoint (torch) or an exported model folder with encoder.onnx (onnxruntime)."""
    if BICUBIC in checkpoints:
        raise ConfigError(f"the name {BICUBIC!r} is reserved for the baseline; name the checkpoint otherwise")
    for name, item in checkpoints.items():
        if not hasattr(item, "super_resolve") and not isinstance(item, (str, os.PathLike)):
            raise ConfigError(f"checkpoint {name}: expected a .pth path or a model with .super_resolve, "
                             f"got {type(item).__name__}")
        if not hasattr(item, "super_resolve") and str(item) != AUTO and not Path(item).is_file() \
                and not _is_onnx_folder(item):
            raise ConfigError(f"checkpoint {name}: {item} does not exist; pass the path of a .pth file "
                             "or of a model folder holding encoder.onnx and decoder.onnx")
    models: dict[str, Any] = {}
    for name, item in checkpoints.items():
        if hasattr(item, "super_resolve"):
            models[name] = item
        elif str(item) == AUTO:
            models[name] = AutoMethod(threads=torch.get_num_threads(), ensemble=ensemble)
        elif _is_aware_folder(item):  # a degradation-aware folder reads each image as `sr` reads a raster
            models[name] = AutoMethod(threads=torch.get_num_threads(), ensemble=ensemble, folder=item)
        elif _is_onnx_folder(item):
            models[name] = OnnxMethod(item, threads=torch.get_num_threads(), ensemble=ensemble)
        else:
            from mlin_qgis.ml.model import load_model  # torch model code only when a path is given

            models[name] = load_model(Path(item))
        if hasattr(models[name], "eval"):
            models[name].eval()
    return models


def _device_of(model: Any) -> torch.device:
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")


def format_table(results: dict[str, Any]) -> str:
    """Markdown table: one row per method, PSNR (dB) and SSIM columns per scale."""
    keys = [scale_key(s) for s in results["scales"]]
    head = "| method | " + " | ".join(f"x{k} PSNR | x{k} SSIM" for k in keys) + " |"
    rule = "|---|" + "---:|---:|" * len(keys)
    rows = [head, rule]
    for method in results["methods"]:
        cells = []
        for k in keys:
            m = results["mean"][method][k]
            cells += [f"{m['psnr']:.2f}", f"{m['ssim']:.4f}"]
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


PROTOCOL_TEXT = {
    "mlin": lambda degradation: {
        "name": "mlin",
        "hr": "top-left crop to multiples of int(s)",
        "lr": f"degradation '{degradation}' of HR to round_half_up(H/s, W/s): {SUITE_DESCRIPTIONS[degradation]}",
        "bicubic_baseline": "resize_bicubic(LR, (H, W), quantize=False)",
        "metrics": "RGB in [0,1], SR clipped, shave ceil(s); SSIM gaussian sigma 1.5, population covariance",
    },
    "funsr": lambda degradation: {
        "name": "funsr",
        "hr": "centre crop of int(48 s) px, zero-padded where larger than the image",
        "lr": "torch bicubic resize of the float HR to 48x48, no antialiasing, no rounding",
        "bicubic_baseline": "torch bicubic upsampling of LR to int(48 s), clipped",
        "metrics": "RGB in [0,1], SR clipped, border s + 5 (s <= 5) or int((s - 5) / 2 * 48)",
    },
}


def _markdown(results: dict[str, Any]) -> str:
    split = f", split `{results['split']}`" if results["split"] else ""
    proto = results["protocol"]
    return (
        "# Evaluation\n\n"
        f"Data: `{results['data_dir']}`{split}, {results['n_images']} images; mean over images.\n\n"
        f"Protocol `{proto.get('name', 'mlin')}`: HR = {proto['hr']}; LR = {proto['lr']}; "
        f"metrics: {proto['metrics']}.\n\n"
        + format_table(results) + "\n"
    )


def first_per_class(images: list[Path], count: int) -> list[Path]:
    """The first `count` images of each class folder: a subset that keeps every land-use class."""
    if count < 1:
        raise ConfigError(f"per-class count must be at least 1, got {count}")
    seen: dict[str, int] = {}
    keep = []
    for path in images:
        n = seen.get(path.parent.name, 0)
        if n < count:
            keep.append(path)
        seen[path.parent.name] = n + 1
    return keep


def evaluate(checkpoints: Mapping[str, Any], data_dir: str | Path, scales: Any,
             split: str | None = None, split_file: str | Path | None = None, limit: int | None = None,
             out_dir: str | Path | None = None, chunk: int = 65536, progress: bool = True,
             per_class: int | None = None, degradation: str = "bicubic", protocol: str = "mlin",
             ensemble: int = 1) -> dict[str, Any]:
    """Evaluate each checkpoint (path or model with .super_resolve) and bicubic on every image and scale.

    Writes results.json and results.md to out_dir when given; returns the same results dict
    (`mean[method][scale_key] = {"psnr", "ssim"}`, per-image lists under `per_image`).
    """
    scale_list = parse_scales(scales)
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol '{protocol}'; choose one of: {', '.join(PROTOCOLS)}")
    if protocol == "funsr" and degradation != "bicubic":
        raise ConfigError("the funsr protocol makes its own LR (bicubic without antialiasing); "
                         "leave --degradation out with --protocol funsr")
    suite_degradation(degradation, 2.0, 0)  # an unknown name fails before anything slow
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    images = list_images(data_dir, split=split, split_file=split_file)
    if per_class is not None:
        images = first_per_class(images, per_class)
    if limit is not None:
        images = images[:limit]
    if ensemble not in (1, 8):
        raise ConfigError(f"ensemble must be 1 or 8, got {ensemble}")
    models = _load_methods(checkpoints, ensemble)
    methods = [BICUBIC, *models]
    keys = [scale_key(s) for s in scale_list]
    per_image: dict[str, dict[str, dict[str, list[float]]]] = {
        m: {k: {"psnr": [], "ssim": []} for k in keys} for m in methods}
    routes: dict[str, dict[str, list[str]]] = {m: {k: [] for k in keys} for m, obj in models.items()
                                                if hasattr(obj, "picks")}

    bar = tqdm(images, desc="evaluate", unit="img", disable=not progress, file=sys.stderr)
    with torch.inference_mode():
        for index, path in enumerate(bar):
            full = torch.from_numpy(load_image(path)).permute(2, 0, 1).float().div_(255.0).unsqueeze(0)
            for scale, key in zip(scale_list, keys):
                if protocol == "mlin":
                    (h, w), lr_size = protocol_sizes(full.shape[-2], full.shape[-1], scale)
                    if min(lr_size) < 1 or min(h, w) - 2 * math.ceil(scale) < 11:
                        raise DataError(f"image {path} ({full.shape[-2]}x{full.shape[-1]}) is too small for "
                                         f"scale {key}; use larger images or smaller scales")
                hr, lr, shave = protocol_pair(full, scale, index, protocol, degradation)
                h, w = hr.shape[-2:]
                outputs = {BICUBIC: bicubic_baseline(lr, (h, w), protocol)}
                for name, model in models.items():
                    sr = model.super_resolve(lr.to(_device_of(model)), (h, w), chunk=chunk)
                    if tuple(sr.shape) != tuple(hr.shape):
                        raise ConfigError(f"{name} returned {tuple(sr.shape)} for output size {(h, w)}; "
                                         "super_resolve must return (B,3,H,W)")
                    outputs[name] = sr.float().cpu()
                    if name in routes:
                        routes[name][key].append(model.picks[-1])
                for name, sr in outputs.items():
                    per_image[name][key]["psnr"].append(psnr(sr[0], hr[0], shave=shave))
                    per_image[name][key]["ssim"].append(ssim(sr[0], hr[0], shave=shave))
            last = keys[0]
            bar.set_postfix_str(" ".join(
                f"{m}={per_image[m][last]['psnr'][-1]:.2f}" for m in methods) + f" dB @x{last}", refresh=False)

    mean = {m: {k: {"psnr": float(np.mean(v["psnr"])), "ssim": float(np.mean(v["ssim"]))}
                for k, v in per_image[m].items()} for m in methods}
    root = Path(data_dir)
    results: dict[str, Any] = {
        "data_dir": str(root),
        "split": split,
        "split_file": str(split_file) if split_file is not None else None,
        "n_images": len(images),
        "images": [p.relative_to(root).as_posix() for p in images],
        "scales": scale_list,
        "methods": methods,
        "checkpoints": {n: (str(c) if not hasattr(c, "super_resolve") else f"<{type(c).__name__}>")
                        for n, c in checkpoints.items()},
        "degradation": degradation,
        "ensemble": ensemble,
        "protocol": PROTOCOL_TEXT[protocol](degradation),
        "mean": mean,
        "per_image": per_image,
    }
    if routes:  # the code `auto` (or an aware model) read for each image
        results["routes"] = routes
    if out_dir is not None:
        write_results(results, out_dir)
    return results


def merge_results(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One table from runs that evaluated different methods on the same images and scales
    (so methods can be evaluated in parallel processes)."""
    if not parts:
        raise ConfigError("nothing to merge")
    merged = json.loads(json.dumps(parts[0]))
    for part in parts[1:]:
        if part["images"] != merged["images"] or part["scales"] != merged["scales"]:
            raise ConfigError("results to merge must cover the same images and scales")
        for method in part["methods"]:
            if method not in merged["methods"]:
                merged["methods"].append(method)
                merged["mean"][method] = part["mean"][method]
                merged["per_image"][method] = part["per_image"][method]
                merged["checkpoints"][method] = part["checkpoints"].get(method)
    return merged


def paired_differences(results: dict[str, Any], a: str, b: str) -> list[dict[str, Any]]:
    """One row per scale: mean/SE of PSNR and SSIM differences and A's win count."""
    for name in (a, b):
        if name not in results["per_image"]:
            raise ConfigError(f"no method {name!r} in the results; it has: "
                             f"{', '.join(results['per_image'])}")
    rows = []
    for key in results["per_image"][a]:
        row: dict[str, Any] = {"scale": key, "n": len(results["per_image"][a][key]["psnr"])}
        for metric in ("psnr", "ssim"):
            d = [x - y for x, y in zip(results["per_image"][a][key][metric], results["per_image"][b][key][metric])]
            n = len(d)
            mean = sum(d) / n
            var = sum((x - mean) ** 2 for x in d) / (n - 1) if n > 1 else 0.0
            row[metric] = {"mean": mean, "se": math.sqrt(var / n), "wins": sum(x > 0 for x in d),
                           "ties": sum(x == 0 for x in d)}
        rows.append(row)
    return rows



def write_results(results: dict[str, Any], out_dir: str | Path) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    (out / "results.md").write_text(_markdown(results), encoding="utf-8")


def quality_table(results: dict[str, Any], labels: Mapping[str, str] | None = None) -> str:
    """The README/model-card table: one row per method, "PSNR / SSIM" per scale, readable labels."""
    labels = labels or {}
    keys = [scale_key(s) for s in results["scales"]]
    lines = ["| method | " + " | ".join(f"x{k}" for k in keys) + " |", "|---|" + "---:|" * len(keys)]
    for method in results["methods"]:
        cells = [f"{results['mean'][method][k]['psnr']:.2f} / {results['mean'][method][k]['ssim']:.4f}" for k in keys]
        lines.append(f"| {labels.get(method, method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_markdown(rows: list[dict[str, Any]], a: str, b: str) -> str:
    """Paired differences as a table: mean ± SE and A's wins, per scale."""
    lines = [f"| scale | ΔPSNR {a} − {b} (dB) ± SE | {a} wins (PSNR) | ΔSSIM ± SE | {a} wins (SSIM) |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        p, s = r["psnr"], r["ssim"]
        lines.append(f"| x{r['scale']} | {p['mean']:+.4f} ± {p['se']:.4f} | {p['wins']}/{r['n']} | "
                     f"{s['mean']:+.4f} ± {s['se']:.4f} | {s['wins']}/{r['n']} |")
    return "\n".join(lines)


def _read_results(path: str | Path) -> dict[str, Any]:
    file = Path(path)
    if file.is_dir():
        file = file / "results.json"
    if not file.is_file():
        raise DataError(f"no evaluation results at {path}; pass a results.json written by `evaluate --out`")
    return json.loads(file.read_text(encoding="utf-8"))


ACTIONS = ("run", "merge", "table", "paired")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `python -m mlin_qgis evaluate` (and its merge/table/paired actions)."""
    defaults = EvalConfig()
    parser.add_argument("action", nargs="?", default="run", choices=ACTIONS,
                        help="run (default): evaluate checkpoints; merge OUT A.json B.json ...: one table from "
                             "runs of other methods on the same images; table RESULTS [NAME=LABEL ...]: the "
                             "README table; paired RESULTS A B: paired differences with standard errors")
    parser.add_argument("inputs", nargs="*", help="the action's files and names (see above)")
    parser.add_argument("--checkpoint", action="append", default=None, metavar="[NAME=]CKPT",
                        help="checkpoint (.pth) or exported model folder (encoder.onnx + decoder.onnx) to evaluate "
                             "(repeatable; FOLDER/decoder.int8.onnx: its int8 decoder); NAME defaults to the file or folder name")
    parser.add_argument("--data", default=None, help="folder of images (flat or <class>/ subfolders)")
    parser.add_argument("--scales", default=",".join(scale_key(s) for s in defaults.scales),
                        help="comma-separated scales > 1, e.g. 2,2.5,3,4 (default %(default)s)")
    parser.add_argument("--split", default=defaults.split, help="split name in --split-file, e.g. val")
    parser.add_argument("--split-file", default=defaults.split_file, help="JSON listing the splits")
    parser.add_argument("--limit", type=int, default=defaults.limit, help="evaluate only the first N images")
    parser.add_argument("--per-class", type=int, default=None,
                        help="evaluate only the first N images of each class folder (a stratified subset)")
    parser.add_argument("--out", default=defaults.out_dir, help="folder for results.json and results.md")
    parser.add_argument("--chunk", type=int, default=defaults.chunk, help="query points per decoder call")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's default)")
    parser.add_argument("--degradation", default="bicubic",
                        help="how LR is made, one name or several comma-separated (one table each, in "
                             "OUT/NAME/ when several): " + ", ".join(suite_names()) + " (default %(default)s)")
    parser.add_argument("--ensemble", type=int, choices=[1, 8], default=1,
                        help="8: run exported model folders with the x8 flip/transpose self-ensemble")
    parser.add_argument("--protocol", default="mlin", choices=PROTOCOLS,
                        help="mlin: whole images (default); funsr: FunSR's 48x48-LR centre-crop protocol")


def _other_action(action: str, inputs: list[str]) -> str:
    if action == "merge":
        if len(inputs) < 3:
            raise ConfigError("evaluate merge OUT_DIR A/results.json B/results.json ...")
        merged = merge_results([_read_results(p) for p in inputs[1:]])
        write_results(merged, inputs[0])
        return _markdown(merged)
    if action == "table":
        if not inputs:
            raise ConfigError("evaluate table RESULTS_JSON [NAME=LABEL ...]")
        results = _read_results(inputs[0])
        labels = dict(item.split("=", 1) for item in inputs[1:] if "=" in item)
        return f"{results['n_images']} images from {results['data_dir']}\n\n" + quality_table(results, labels)
    if len(inputs) != 3:
        raise ConfigError("evaluate paired RESULTS_JSON METHOD_A METHOD_B")
    return paired_markdown(paired_differences(_read_results(inputs[0]), inputs[1], inputs[2]), inputs[1], inputs[2])


def run(args: argparse.Namespace) -> int:
    """CLI entry: evaluate, print the table, return 0; on bad input print the error and return 2."""
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        action = getattr(args, "action", "run")
        if action != "run":
            print(_other_action(action, list(args.inputs)))
            return 0
        if not args.checkpoint or not args.data:
            raise ConfigError("evaluate needs --checkpoint (at least one) and --data")
        checkpoints: dict[str, Path] = {}
        for value in args.checkpoint:
            name, path = parse_checkpoint_arg(value)
            if name in checkpoints:
                raise ConfigError(f"two checkpoints are named {name!r}; name them with NAME=CKPT")
            checkpoints[name] = path
        names = [n.strip() for n in str(args.degradation).split(",") if n.strip()]
        for name in names:
            suite_degradation(name, 2.0, 0)  # all names checked before the first slow run
        for name in names:
            out = Path(args.out) / name if args.out and len(names) > 1 else args.out
            results = evaluate(checkpoints, args.data, args.scales, split=args.split, split_file=args.split_file,
                               limit=args.limit, out_dir=out, chunk=args.chunk, per_class=args.per_class,
                               degradation=name, protocol=args.protocol, ensemble=args.ensemble)
            print(_markdown(results))
            if out:
                print(f"results written to {Path(out) / 'results.json'} and results.md")
    except MlinError as exc:
        print(f"mlin_qgis evaluate: error: {exc}", file=sys.stderr)
        return 2
    return 0
