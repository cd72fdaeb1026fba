"""Render the weights-map picture of the model card: input, MLIN output, and where meta weights depart
from LIIF's area weights (max |w_meta - w_area| per output pixel), side by side as one PNG.

Usage: .venv/bin/python scripts/weights_map_figure.py INPUT.tif OUT.png [--scale 4] [--model NAME]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from osgeo import gdal
from PIL import Image

from mlin_qgis.core.pipeline import SuperResolveRequest, superresolve


def _read(path: Path) -> np.ndarray:
    ds = gdal.Open(str(path))
    arr = ds.ReadAsArray()
    ds = None
    return arr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--scale", type=float, default=4.0)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sr_path, wm_path = Path(tmp) / "sr.tif", Path(tmp) / "weights.tif"
        superresolve(SuperResolveRequest(args.input, sr_path, args.scale, model=args.model,
                                         weights_map_path=wm_path))
        sr = _read(sr_path)[:3].transpose(1, 2, 0)
        wm = _read(wm_path).astype(np.float32)
    h, w = sr.shape[:2]
    lr = _read(Path(args.input))[:3].transpose(1, 2, 0)
    lr_up = np.asarray(Image.fromarray(lr).resize((w, h), Image.NEAREST))
    top = float(np.percentile(wm, 99.5)) or 1.0
    level = np.clip(wm / top, 0, 1)
    # A simple dark-blue -> yellow ramp; bright means content moved the mixing away from LIIF.
    heat = np.stack([255 * level, 220 * np.sqrt(level), 255 * (1 - level) * 0.6], axis=-1).astype(np.uint8)
    Image.fromarray(np.concatenate([lr_up, sr, heat], axis=1)).save(args.output)
    print(f"wrote {args.output}: input (nearest), MLIN x{args.scale:g}, max|w_meta - w_area| "
          f"(mean {wm.mean():.4f}, 99.5th percentile {top:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
