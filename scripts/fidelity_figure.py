"""docs/fidelity.png: an SR output next to its area-average-back residual (area average of the output over
each input pixel's footprint minus that input pixel), without and with `--fidelity`.

Usage: python scripts/fidelity_figure.py [--scale 4] [--size 96] [--out docs/fidelity.png]
Runs the real `sr` command on a centre window of the shipped demo raster (resources/OSBS_029.tif)."""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from osgeo import gdal  # noqa: E402

from mlin_qgis.core.fidelity import average, axis_area  # noqa: E402

log = logging.getLogger("fidelity_figure")
REPO = Path(__file__).resolve().parents[1]


def area_average_back(out: np.ndarray, n_in: tuple[int, int]) -> np.ndarray:
    """(bands, H, W) -> (bands, h, w): the exact area average of the output over each input pixel."""
    rows = axis_area(n_in[0], out.shape[1], 0, n_in[0])
    cols = axis_area(n_in[1], out.shape[2], 0, n_in[1])
    return average(cols, average(rows, out, axis=1), axis=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=4.0)
    ap.add_argument("--size", type=int, default=96, help="input window (px)")
    ap.add_argument("--out", default=str(REPO / "docs/fidelity.png"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    gdal.UseExceptions()
    with tempfile.TemporaryDirectory() as tmp:
        src = gdal.Open(str(REPO / "resources/OSBS_029.tif"))
        x0, y0 = (src.RasterXSize - args.size) // 2, (src.RasterYSize - args.size) // 2
        lr_path = f"{tmp}/lr.tif"
        gdal.Translate(lr_path, src, srcWin=[x0, y0, args.size, args.size])
        lr = gdal.Open(lr_path).ReadAsArray().astype(np.float64)
        results = {}
        for label, extra in (("default", []), ("--fidelity", ["--fidelity"])):
            path = f"{tmp}/sr{len(results)}.tif"
            subprocess.run([sys.executable, "-m", "mlin_qgis", "sr", lr_path, path, "--scale", f"{args.scale:g}", *extra],
                           check=True, cwd=REPO)
            out = gdal.Open(path).ReadAsArray().astype(np.float64)
            residual = area_average_back(out, lr.shape[1:]) - lr
            results[label] = (out, residual)
            log.info("%s: residual RMS %.3f DN, max %.2f DN (after rounding to uint8)", label,
                     np.sqrt((residual ** 2).mean()), np.abs(residual).max())
    fig, axes = plt.subplots(2, 2, figsize=(9, 8.4))
    limit = float(np.percentile(np.abs(results["default"][1].mean(axis=0)), 99.5))  # one scale for both
    for row, (label, (out, residual)) in enumerate(results.items()):
        axes[row, 0].imshow(np.clip(out.transpose(1, 2, 0), 0, 255).astype(np.uint8))
        axes[row, 0].set_title(f"x{args.scale:g} output, {label}")
        im = axes[row, 1].imshow(residual.mean(axis=0), cmap="RdBu_r", vmin=-limit, vmax=limit)
        rms = np.sqrt((residual ** 2).mean())
        axes[row, 1].set_title(f"averaged back - input: RMS {rms:.2f} DN")
        fig.colorbar(im, ax=axes[row, 1], fraction=0.046, label="DN (band mean)")
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
