"""The fidelity option's effect (issue 32) from `evaluate --fidelity` results: per degradation and scale,
paired PSNR and SSIM of METHOD+fidelity minus METHOD (± SE), and the consistency (RMS of the area average
of the output minus the input, DN) without and with the option, beside HR's own.

Usage: python scripts/fidelity_table.py [--method auto] RESULTS_DIR [RESULTS_DIR ...]
(each RESULTS_DIR holds results.json, or one folder per degradation with results.json)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List

import numpy as np


def result_files(root: Path) -> List[Path]:
    if (root / "results.json").is_file():
        return [root / "results.json"]
    return sorted(root.glob("*/results.json"))


def rows(files: List[Path], method: str) -> List[str]:
    out = ["| LR | protocol | scale | n | PSNR: +fidelity − without (± SE) | worst image | SSIM change (± SE) | "
           "consistency DN without → with | HR's own |", "|---|---|---|---:|---:|---:|---:|---|---:|"]
    for path in files:
        res = json.loads(path.read_text())
        per = res["per_image"]
        name = res.get("degradation", path.parent.name)
        protocol = {"funsr": "FunSR crops"}.get(res.get("protocol", {}).get("name", "mlin"), "whole image")
        for key in per[method]:
            a, b = per[method][key], per[f"{method}+fidelity"][key]
            dp = np.array(b["psnr"]) - np.array(a["psnr"])
            ds = np.array(b["ssim"]) - np.array(a["ssim"])
            n = len(dp)
            hr = res.get("hr_consistency", {}).get("mean", {}).get(key, float("nan"))
            out.append(f"| {name} | {protocol} | x{key} | {n} | {dp.mean():+.3f} ± {dp.std(ddof=1) / np.sqrt(n):.3f} | "
                       f"{dp.min():+.2f} | {ds.mean():+.4f} ± {ds.std(ddof=1) / np.sqrt(n):.4f} | "
                       f"{np.mean(a['consistency']):.2f} → {np.mean(b['consistency']):.3f} | {hr:.2f} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("roots", nargs="+")
    ap.add_argument("--method", default="auto")
    args = ap.parse_args()
    files = [f for r in args.roots for f in result_files(Path(r))]
    print("\n".join(rows(files, args.method)))


if __name__ == "__main__":
    main()
