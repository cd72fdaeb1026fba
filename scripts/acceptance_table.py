"""The acceptance table of the robust model: for each LR type (clean, aliased, JPEG) and scale, the
default model's mean PSNR, bicubic's and LIIF's, and the paired difference to bicubic with its
standard error, from `evaluate --degradation ... --out DIR` runs over the same images.

Usage: .venv/bin/python scripts/acceptance_table.py MODEL DIR [DIR ...] [--liif-clean RESULTS_JSON]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlin_qgis.ml.degradation import SUITE_DESCRIPTIONS, suite_names
from mlin_qgis.ml.reports import merge_results, paired_differences


def restrict(results: dict, like: dict, method: str) -> dict:
    """Only `method`, and the scales and images of `like`, from an earlier results.json, to merge it."""
    keys = [f"{s:g}" for s in like["scales"]]
    pos = {name: i for i, name in enumerate(results["images"])}
    idx = [pos[name] for name in like["images"]]
    per = {k: {m: [results["per_image"][method][k][m][i] for i in idx] for m in ("psnr", "ssim")} for k in keys}
    out = dict(results)
    out.update(scales=list(like["scales"]), images=list(like["images"]), n_images=len(idx), methods=[method],
               per_image={method: per},
               mean={method: {k: {m: sum(v[m]) / len(v[m]) for m in ("psnr", "ssim")} for k, v in per.items()}})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--reference", default="liif", help="the comparison method (default liif)")
    parser.add_argument("--reference-clean", type=Path, default=None,
                        help="results.json with the reference on clean LR (same images), when not in DIRS")
    args = parser.parse_args()
    lines = ["| LR made by | scale | bicubic | reference | model | model − bicubic (± SE, wins) | model − reference (± SE) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name in suite_names():
        parts = [json.loads((d / name / "results.json").read_text()) for d in args.dirs
                 if (d / name / "results.json").is_file()]
        if name == "bicubic" and args.reference_clean and parts:
            parts.append(restrict(json.loads(args.reference_clean.read_text()), parts[0], args.reference))
        if not parts:
            continue
        res = merge_results(parts)
        if args.model not in res["methods"]:
            continue
        vs_bic = {r["scale"]: r for r in paired_differences(res, args.model, "bicubic")}
        vs_ref = ({r["scale"]: r for r in paired_differences(res, args.model, args.reference)}
                  if args.reference in res["methods"] else {})
        for key in vs_bic:
            mean = res["mean"]
            ref = f"{mean[args.reference][key]['psnr']:.2f}" if args.reference in mean else "—"
            d_ref = (f"{vs_ref[key]['psnr']['mean']:+.2f} ± {vs_ref[key]['psnr']['se']:.2f}" if key in vs_ref else "—")
            b = vs_bic[key]["psnr"]
            lines.append(f"| {name} | x{key} | {mean['bicubic'][key]['psnr']:.2f} | {ref} | "
                         f"{mean[args.model][key]['psnr']:.2f} | {b['mean']:+.2f} ± {b['se']:.2f} "
                         f"({b['wins']}/{vs_bic[key]['n']}) | {d_ref} |")
    print(f"{res['n_images']} images of `{res['data_dir']}`, PSNR (dB), RGB, whole images.\n")
    print("\n".join(lines))
    print()
    print("\n".join(f"- `{n}`: {SUITE_DESCRIPTIONS[n]}" for n in suite_names()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
