"""Print the quality table of the README and the model card from an `evaluate` results.json:
one row per method, "PSNR / SSIM" per scale, with readable method labels.

Usage: .venv/bin/python scripts/quality_table.py RESULTS_JSON [NAME=LABEL ...]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def table(results: dict, labels: dict) -> str:
    keys = [f"{s:g}" for s in results["scales"]]
    lines = ["| method | " + " | ".join(f"x{k}" for k in keys) + " |", "|---|" + "---:|" * len(keys)]
    for method in results["methods"]:
        cells = [f"{results['mean'][method][k]['psnr']:.2f} / {results['mean'][method][k]['ssim']:.4f}" for k in keys]
        lines.append(f"| {labels.get(method, method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    results = json.loads(Path(sys.argv[1]).read_text())
    labels = dict(arg.split("=", 1) for arg in sys.argv[2:])
    print(f"{results['n_images']} images from {results['data_dir']}\n")
    print(table(results, labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
