"""One markdown report from `evaluate --degradation a,b,c --out DIR` runs: PSNR per degradation, method
and scale, then each named method's paired difference against bicubic (and against a reference
method) with its standard error and win count.

Usage: .venv/bin/python scripts/robustness_report.py DIR [DIR ...] --versus bicubic --focus robust \
           [--reference liif] > docs/results/robustness.md
Each DIR holds one sub-folder per degradation (NAME/results.json); folders that evaluated different
methods on the same images and scales are merged."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlin_qgis.ml.degradation import SUITE_DESCRIPTIONS, suite_names
from mlin_qgis.ml.reports import merge_results, paired_differences


def load(dirs: list[Path]) -> dict[str, dict]:
    by_degradation: dict[str, list[dict]] = {}
    for folder in dirs:
        for name in suite_names():
            path = folder / name / "results.json"
            if path.is_file():
                by_degradation.setdefault(name, []).append(json.loads(path.read_text()))
    return {name: merge_results(parts) for name, parts in by_degradation.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--focus", action="append", default=[], help="method(s) to compare (repeatable)")
    parser.add_argument("--reference", default=None, help="also compare each focus method with this one")
    args = parser.parse_args()
    results = load(args.dirs)
    if not results:
        raise SystemExit(f"no NAME/results.json under {', '.join(map(str, args.dirs))}")
    first = next(iter(results.values()))
    keys = [f"{s:g}" for s in first["scales"]]
    out = [f"Images: {first['n_images']} of `{first['data_dir']}`; PSNR (dB) on RGB, whole images, "
           "SR clipped, ceil(s) px shaved.", "",
           "| LR made by | method | " + " | ".join(f"x{k}" for k in keys) + " |",
           "|---|---|" + "---:|" * len(keys)]
    for name, res in results.items():
        for method in res["methods"]:
            out.append(f"| {name} | {method} | "
                       + " | ".join(f"{res['mean'][method][k]['psnr']:.2f}" for k in keys) + " |")
    out.append("")
    for focus in args.focus:
        for other in ["bicubic"] + ([args.reference] if args.reference else []):
            out += [f"**{focus} − {other}** (paired over images: mean ΔPSNR dB ± SE, wins)", "",
                    "| LR made by | " + " | ".join(f"x{k}" for k in keys) + " |", "|---|" + "---:|" * len(keys)]
            for name, res in results.items():
                if focus not in res["methods"] or other not in res["methods"]:
                    continue
                rows = {r["scale"]: r for r in paired_differences(res, focus, other)}
                cells = [f"{rows[k]['psnr']['mean']:+.2f} ± {rows[k]['psnr']['se']:.2f} "
                         f"({rows[k]['psnr']['wins']}/{rows[k]['n']})" for k in keys]
                out.append(f"| {name} | " + " | ".join(cells) + " |")
            out.append("")
    out += ["Degradations (`mlin_qgis/ml/degradation.py`):", ""]
    out += [f"- `{name}`: {SUITE_DESCRIPTIONS[name]}" for name in results]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
