"""Whole-image evaluation of SR methods against the bicubic baseline, at arbitrary scales, and its result files.

Every method and the baseline see the same (HR, LR) pairs (protocols.py), so differences are paired
per image. Per method, image and scale: PSNR and SSIM against HR, and the radiometric consistency
with LR (consistency.py: RMS of area average of SR - LR, in DN). With ``fidelity=True`` every method
also gets a twin ``NAME+fidelity``: its own output corrected to average back to LR (what
`sr --fidelity` writes), so the correction's cost in PSNR/SSIM is measured on the same outputs
without running the model twice. The results go to results.json (everything, per image) and
results.md (the mean table); reports.py reads them back.
"""
from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from tqdm import tqdm

from mlin_qgis.core.errors import ConfigError, DataError
from mlin_qgis.ml.consistency import consistency_rms, fidelity_corrected
from mlin_qgis.ml.images import list_images, load_image
from mlin_qgis.ml.methods import BICUBIC, device_of, load_methods
from mlin_qgis.ml.metrics import psnr, ssim
from mlin_qgis.ml.protocols import (
    PROTOCOL_TEXT,
    bicubic_baseline,
    check_protocol,
    first_per_class,
    parse_scales,
    protocol_pair,
    protocol_sizes,
    scale_key,
)

log = logging.getLogger(__name__)

FIDELITY = "+fidelity"  # suffix of a method's fidelity-corrected twin
METRICS = ("psnr", "ssim", "consistency")
CONSISTENCY_TEXT = ("RMS over LR pixels and bands of (area average of SR clipped to [0,1] over each LR pixel's "
                    "footprint - LR), in DN (0-255), before rounding; core/fidelity.py's operator")


@dataclass
class EvalConfig:
    """Defaults of the `evaluate` CLI."""

    scales: tuple[float, ...] = (2.0, 3.0, 4.0)
    split: str | None = None
    split_file: str | None = None
    limit: int | None = None
    out_dir: str | None = None
    chunk: int = 65536  # query points per decoder call: bounds memory on large images


def select_images(data_dir: str | Path, split: str | None = None, split_file: str | Path | None = None,
                  limit: int | None = None, per_class: int | None = None) -> list[Path]:
    """The evaluated images: the split (or every image), then the per-class subset, then the limit."""
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    images = list_images(data_dir, split=split, split_file=split_file)
    if per_class is not None:
        images = first_per_class(images, per_class)
    return images[:limit] if limit is not None else images


def method_names(models: Mapping[str, Any], fidelity: bool) -> list[str]:
    """Table rows: the baseline, then each method, each followed by its corrected twin with ``fidelity``."""
    plain = [BICUBIC, *models]
    if not fidelity:
        return plain
    twins = [f"{m}{FIDELITY}" for m in plain]
    clash = sorted(set(twins) & set(plain))
    if clash:
        raise ConfigError(f"method name {clash[0]!r} is taken by a checkpoint; with fidelity on, "
                         f"'{FIDELITY}' names the corrected twins")
    return [name for pair in zip(plain, twins) for name in pair]


def _check_size(full: torch.Tensor, scale: float, path: Path) -> None:
    (h, w), lr_size = protocol_sizes(full.shape[-2], full.shape[-1], scale)
    if min(lr_size) < 1 or min(h, w) - 2 * math.ceil(scale) < 11:
        raise DataError(f"image {path} ({full.shape[-2]}x{full.shape[-1]}) is too small for "
                        f"scale {scale_key(scale)}; use larger images or smaller scales")


def evaluate(checkpoints: Mapping[str, Any], data_dir: str | Path, scales: Any,
             split: str | None = None, split_file: str | Path | None = None, limit: int | None = None,
             out_dir: str | Path | None = None, chunk: int = 65536, progress: bool = True,
             per_class: int | None = None, degradation: str = "bicubic", protocol: str = "mlin",
             ensemble: int = 1, fidelity: bool = False) -> dict[str, Any]:
    """Evaluate each checkpoint (path or model with .super_resolve) and bicubic on every image and scale.

    Writes results.json and results.md to out_dir when given; returns the same results dict
    (`mean[method][scale_key] = {"psnr", "ssim", "consistency"}`, per-image lists under `per_image`).
    """
    scale_list = parse_scales(scales)
    check_protocol(protocol, degradation)
    images = select_images(data_dir, split, split_file, limit, per_class)
    if ensemble not in (1, 8):
        raise ConfigError(f"ensemble must be 1 or 8, got {ensemble}")
    models = load_methods(checkpoints, ensemble)
    methods = method_names(models, fidelity)
    keys = [scale_key(s) for s in scale_list]
    per_image: dict[str, dict[str, dict[str, list[float]]]] = {
        m: {k: {metric: [] for metric in METRICS} for k in keys} for m in methods}
    routes: dict[str, dict[str, list[str]]] = {m: {k: [] for k in keys} for m, obj in models.items()
                                                if hasattr(obj, "picks")}
    # HR's own consistency: the suite's LR is not an area average of HR, so even the truth is off by this
    hr_consistency: dict[str, list[float]] = {k: [] for k in keys}

    bar = tqdm(images, desc="evaluate", unit="img", disable=not progress, file=sys.stderr)
    with torch.inference_mode():
        for index, path in enumerate(bar):
            full = torch.from_numpy(load_image(path)).permute(2, 0, 1).float().div_(255.0).unsqueeze(0)
            for scale, key in zip(scale_list, keys):
                if protocol == "mlin":
                    _check_size(full, scale, path)
                hr, lr, shave = protocol_pair(full, scale, index, protocol, degradation)
                h, w = hr.shape[-2:]
                hr_consistency[key].append(consistency_rms(hr, lr))
                outputs = {BICUBIC: bicubic_baseline(lr, (h, w), protocol)}
                for name, model in models.items():
                    sr = model.super_resolve(lr.to(device_of(model)), (h, w), chunk=chunk)
                    if tuple(sr.shape) != tuple(hr.shape):
                        raise ConfigError(f"{name} returned {tuple(sr.shape)} for output size {(h, w)}; "
                                         "super_resolve must return (B,3,H,W)")
                    outputs[name] = sr.float().cpu()
                    if name in routes:
                        routes[name][key].append(model.picks[-1])
                if fidelity:
                    outputs.update({f"{n}{FIDELITY}": fidelity_corrected(sr, lr) for n, sr in list(outputs.items())})
                for name, sr in outputs.items():
                    cell = per_image[name][key]
                    cell["psnr"].append(psnr(sr[0], hr[0], shave=shave))
                    cell["ssim"].append(ssim(sr[0], hr[0], shave=shave))
                    cell["consistency"].append(consistency_rms(sr, lr))
            last = keys[0]
            bar.set_postfix_str(" ".join(
                f"{m}={per_image[m][last]['psnr'][-1]:.2f}" for m in methods) + f" dB @x{last}", refresh=False)

    mean = {m: {k: {metric: float(np.mean(v[metric])) for metric in METRICS}
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
        "fidelity": fidelity,
        "protocol": PROTOCOL_TEXT[protocol](degradation),
        "consistency": CONSISTENCY_TEXT,
        "hr_consistency": {"mean": {k: float(np.mean(v)) for k, v in hr_consistency.items()},
                           "per_image": hr_consistency},
        "mean": mean,
        "per_image": per_image,
    }
    if routes:  # the code `auto` (or an aware model) read for each image
        results["routes"] = routes
    if out_dir is not None:
        write_results(results, out_dir)
    return results


def has_consistency(results: Mapping[str, Any]) -> bool:
    """Whether every method has the consistency column (results.json files from before it lack it)."""
    return all("consistency" in cell for m in results["methods"] for cell in results["mean"][m].values())


def format_table(results: Mapping[str, Any]) -> str:
    """Markdown table: one row per method, PSNR (dB), SSIM and consistency (DN) columns per scale."""
    keys = [scale_key(s) for s in results["scales"]]
    cons = has_consistency(results)
    metrics = METRICS if cons else METRICS[:2]
    head = "| method | " + " | ".join(f"x{k} PSNR | x{k} SSIM" + (f" | x{k} cons. DN" if cons else "")
                                     for k in keys) + " |"
    rows = [head, "|---|" + "---:|" * (len(keys) * len(metrics))]
    formats = {"psnr": "{:.2f}", "ssim": "{:.4f}", "consistency": "{:.3f}"}
    for method in results["methods"]:
        cells = [formats[metric].format(results["mean"][method][k][metric]) for k in keys for metric in metrics]
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def markdown(results: Mapping[str, Any]) -> str:
    """results.md: data, protocol, what the columns mean, and the mean table."""
    split = f", split `{results['split']}`" if results["split"] else ""
    proto = results["protocol"]
    cons = f"cons. DN = consistency: {results['consistency']}.\n\n" if "consistency" in results else ""
    if "hr_consistency" in results:
        cons += ("HR's own consistency with this LR (where LR is not HR's area average, even the truth is off): "
                 + ", ".join(f"x{k} {v:.3f} DN" for k, v in results["hr_consistency"]["mean"].items()) + ".\n\n")
    fixed = (f"`NAME{FIDELITY}`: that method's output corrected so its area average equals LR "
             "(core/fidelity.py, whole image).\n\n") if results.get("fidelity") else ""
    return (
        "# Evaluation\n\n"
        f"Data: `{results['data_dir']}`{split}, {results['n_images']} images; mean over images.\n\n"
        f"Protocol `{proto.get('name', 'mlin')}`: HR = {proto['hr']}; LR = {proto['lr']}; "
        f"metrics: {proto['metrics']}.\n\n"
        + cons + fixed + format_table(results) + "\n"
    )


def write_results(results: Mapping[str, Any], out_dir: str | Path) -> None:
    """results.json (everything, per image) and results.md (the mean table) in out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    (out / "results.md").write_text(markdown(results), encoding="utf-8")
    log.debug("results written to %s", out)


def read_results(path: str | Path) -> dict[str, Any]:
    """A results.json written by `evaluate --out` (or its folder)."""
    file = Path(path)
    if file.is_dir():
        file = file / "results.json"
    if not file.is_file():
        raise DataError(f"no evaluation results at {path}; pass a results.json written by `evaluate --out`")
    return json.loads(file.read_text(encoding="utf-8"))
