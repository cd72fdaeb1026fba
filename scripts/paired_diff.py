"""Paired comparison of two methods in an `evaluate` results.json: per scale, the mean PSNR and SSIM
difference (A - B) over the same images, its standard error, and how many images A wins.

A mean difference of a few hundredths of a dB is only a result if it is several standard errors
away from zero; this prints both, so a table of means is not read as more than it is.

Usage: .venv/bin/python scripts/paired_diff.py RESULTS_JSON METHOD_A METHOD_B
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List


def paired(results: Dict[str, Any], a: str, b: str) -> List[Dict[str, Any]]:
    """One row per scale: mean/SE of PSNR and SSIM differences and A's win count."""
    for name in (a, b):
        if name not in results["per_image"]:
            raise SystemExit(f"paired_diff: no method {name!r} in the results; it has: "
                             f"{', '.join(results['per_image'])}")
    rows = []
    for key in results["per_image"][a]:
        row: Dict[str, Any] = {"scale": key, "n": len(results["per_image"][a][key]["psnr"])}
        for metric in ("psnr", "ssim"):
            d = [x - y for x, y in zip(results["per_image"][a][key][metric], results["per_image"][b][key][metric])]
            n = len(d)
            mean = sum(d) / n
            var = sum((x - mean) ** 2 for x in d) / (n - 1) if n > 1 else 0.0
            row[metric] = {"mean": mean, "se": math.sqrt(var / n), "wins": sum(x > 0 for x in d),
                           "ties": sum(x == 0 for x in d)}
        rows.append(row)
    return rows


def markdown(rows: List[Dict[str, Any]], a: str, b: str) -> str:
    lines = [f"| scale | ΔPSNR {a} − {b} (dB) ± SE | {a} wins (PSNR) | ΔSSIM ± SE | {a} wins (SSIM) |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        p, s = r["psnr"], r["ssim"]
        lines.append(f"| x{r['scale']} | {p['mean']:+.4f} ± {p['se']:.4f} | {p['wins']}/{r['n']} | "
                     f"{s['mean']:+.4f} ± {s['se']:.4f} | {s['wins']}/{r['n']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("a")
    parser.add_argument("b")
    args = parser.parse_args()
    results = json.loads(Path(args.results).read_text())
    print(markdown(paired(results, args.a, args.b), args.a, args.b))
    return 0


if __name__ == "__main__":
    sys.exit(main())
