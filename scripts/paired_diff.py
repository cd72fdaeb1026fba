"""Paired comparison of two methods in an `evaluate` results.json: per scale, the mean PSNR and SSIM
difference (A - B) over the same images, its standard error, and how many images A wins.

A mean difference of a few hundredths of a dB is only a result if it is several standard errors
away from zero; this prints both, so a table of means is not read as more than it is.

Usage: .venv/bin/python scripts/paired_diff.py RESULTS_JSON METHOD_A METHOD_B
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List

from mlin_qgis.ml.evaluate import paired_differences as paired


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
