"""The acceptance cells of issue 30 from `evaluate` results: paired mean difference ± SE, how many images
are below bicubic and the worst one. Usage: python scripts/aware_cells.py RESULTS_DIR [METHOD] [REFERENCE]
(RESULTS_DIR holds one folder per degradation, each with results.json; REFERENCE, default liif, is the
clean-LR comparison when that run has it)."""
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


if __name__ == "__main__":
    args = sys.argv[1:]
    print("\n".join(cells(Path(args[0]), *args[1:3])))
