"""Reports read from `evaluate` results (no evaluation here): merged tables, README tables, paired differences.

Methods are often evaluated in separate processes (one per core) on the same images, so the reports
work from results.json files: `merge` joins them, `table` writes the README/model-card table and
`paired` the per-image paired differences with standard errors, which tell a real difference of a
few hundredths of a dB from noise where the means alone cannot.
"""
from __future__ import annotations

import json
import math
from typing import Any, Mapping

from mlin_qgis.core.errors import ConfigError
from mlin_qgis.ml.protocols import scale_key

# Higher is better for PSNR and SSIM; for the consistency RMS (DN) lower is better, so A "wins" below B.
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "consistency": False}


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


def _paired(a: list[float], b: list[float], higher_is_better: bool) -> dict[str, Any]:
    """Mean and standard error of a - b, with A's wins (better on that image) and ties."""
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / (n - 1) if n > 1 else 0.0
    return {"mean": mean, "se": math.sqrt(var / n), "wins": sum((x > 0) if higher_is_better else (x < 0) for x in d),
            "ties": sum(x == 0 for x in d)}


def paired_differences(results: Mapping[str, Any], a: str, b: str) -> list[dict[str, Any]]:
    """One row per scale: mean/SE of the PSNR, SSIM (and, where both have it, consistency) differences
    A - B and A's win count."""
    per = results["per_image"]
    for name in (a, b):
        if name not in per:
            raise ConfigError(f"no method {name!r} in the results; it has: {', '.join(per)}")
    rows = []
    for key in per[a]:
        row: dict[str, Any] = {"scale": key, "n": len(per[a][key]["psnr"])}
        for metric, higher in HIGHER_IS_BETTER.items():
            if metric in per[a][key] and metric in per[b][key]:
                row[metric] = _paired(per[a][key][metric], per[b][key][metric], higher)
        rows.append(row)
    return rows


def paired_markdown(rows: list[dict[str, Any]], a: str, b: str) -> str:
    """Paired differences as a table: mean ± SE and A's wins, per scale (consistency: A wins when lower)."""
    cons = bool(rows) and all("consistency" in r for r in rows)
    head = f"| scale | ΔPSNR {a} − {b} (dB) ± SE | {a} wins (PSNR) | ΔSSIM ± SE | {a} wins (SSIM) |"
    rule = "|---|---:|---:|---:|---:|"
    if cons:
        head += f" Δconsistency (DN) ± SE | {a} lower (consistency) |"
        rule += "---:|---:|"
    lines = [head, rule]
    for r in rows:
        p, s = r["psnr"], r["ssim"]
        line = (f"| x{r['scale']} | {p['mean']:+.4f} ± {p['se']:.4f} | {p['wins']}/{r['n']} | "
                f"{s['mean']:+.4f} ± {s['se']:.4f} | {s['wins']}/{r['n']} |")
        if cons:
            c = r["consistency"]
            line += f" {c['mean']:+.3f} ± {c['se']:.3f} | {c['wins']}/{r['n']} |"
        lines.append(line)
    return "\n".join(lines)


def quality_table(results: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> str:
    """The README/model-card table: one row per method, "PSNR / SSIM" per scale, readable labels;
    with a consistency column (DN, mean over images) per scale where the results have it."""
    labels = labels or {}
    keys = [scale_key(s) for s in results["scales"]]
    mean = results["mean"]
    cons = all("consistency" in mean[m][k] for m in results["methods"] for k in keys)
    head = "| method | " + " | ".join(f"x{k}" + (f" | x{k} consistency (DN)" if cons else "") for k in keys) + " |"
    lines = [head, "|---|" + "---:|" * (len(keys) * (2 if cons else 1))]
    for method in results["methods"]:
        cells = []
        for k in keys:
            cells.append(f"{mean[method][k]['psnr']:.2f} / {mean[method][k]['ssim']:.4f}")
            if cons:
                cells.append(f"{mean[method][k]['consistency']:.2f}")
        lines.append(f"| {labels.get(method, method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
