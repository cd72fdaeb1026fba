"""The acceptance cells of issue 30 from `evaluate` results: paired mean difference ± SE, how many images
are below bicubic and the worst one. Usage: python scripts/aware_cells.py RESULTS_DIR [METHOD] [REFERENCE]
(RESULTS_DIR holds one folder per degradation, each with results.json; REFERENCE, default liif, is the
clean-LR comparison when that run has it).

    python scripts/aware_cells.py --against OLD_DIR NEW_DIR [METHOD]

pairs two runs of the same method (e.g. two chunks) on the images they share, matched by name."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def cells(root: Path, method: str = "auto", reference: str = "liif") -> list[str]:
    rows = ["| LR | scale | n | model − bicubic (± SE) | below bicubic | worst vs bicubic (image) | model − reference (± SE) |",
            "|---|---|---:|---:|---:|---|---:|"]
    for folder in sorted(p for p in root.iterdir() if (p / "results.json").is_file()):
        res = json.loads((folder / "results.json").read_text())
        per, images = res["per_image"], res["images"]
        for key in per[method]:
            m, b = np.array(per[method][key]["psnr"]), np.array(per["bicubic"][key]["psnr"])
            d = m - b
            worst = int(np.argmin(d))
            ref = ""
            if reference in per:
                r = m - np.array(per[reference][key]["psnr"])
                ref = f"{r.mean():+.2f} ± {r.std(ddof=1) / np.sqrt(len(r)):.2f}"
            rows.append(f"| {folder.name} | x{key} | {len(d)} | {d.mean():+.2f} ± {d.std(ddof=1) / np.sqrt(len(d)):.2f} | "
                        f"{int((d < 0).sum())} | {d[worst]:+.2f} ({images[worst]}) | {ref or '—'} |")
    return rows


def against(old: Path, new: Path, method: str = "auto") -> list[str]:
    """new − old per cell, paired on the images both runs hold."""
    rows = ["| LR | scale | n | new − old (± SE) | worst image |", "|---|---|---:|---:|---|"]
    for folder in sorted(p for p in new.iterdir() if (p / "results.json").is_file()):
        if not (old / folder.name / "results.json").is_file():
            continue
        a, b = (json.loads((d / folder.name / "results.json").read_text()) for d in (new, old))
        for key in a["per_image"][method]:
            pa = dict(zip(a["images"], a["per_image"][method][key]["psnr"]))
            pb = dict(zip(b["images"], b["per_image"][method].get(key, {}).get("psnr", [])))
            shared = [i for i in pa if i in pb]
            if len(shared) < 2:
                continue
            d = np.array([pa[i] - pb[i] for i in shared])
            rows.append(f"| {folder.name} | x{key} | {len(d)} | {d.mean():+.2f} ± {d.std(ddof=1) / np.sqrt(len(d)):.2f} | "
                        f"{d.min():+.2f} ({shared[int(np.argmin(d))]}) |")
    return rows


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--against":
        print("\n".join(against(Path(args[1]), Path(args[2]), *args[3:4])))
    else:
        print("\n".join(cells(Path(args[0]), *args[1:3])))
