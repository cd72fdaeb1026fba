"""Real rasters with no ground truth: side-by-side crops and the no-reference artefact indicators.

    .venv/bin/python scripts/real_rasters.py --model liif=models/liif-edsr-div2k \
        --model mlin-0.3=models/mlin-edsr-ucmerced --model auto=auto --scale 4 --out docs

Writes docs/real_rasters.png (input, bicubic, each model on a crop of each raster) and
docs/results/real_rasters.{md,json} (overshoot and new high-frequency energy, mlin_qgis/ml/artefacts.py,
on a central window of each raster)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from osgeo import gdal
from PIL import Image, ImageDraw

from mlin_qgis.core.auto import auto_decision, aware_folder
from mlin_qgis.core.aware import code_spec
from mlin_qgis.core.engine import SuperResolver, open_engine
from mlin_qgis.ml.artefacts import artefact_scores
from mlin_qgis.ml.resize import resize_bicubic

ROOT = Path(__file__).resolve().parents[1]
RASTERS = {
    "OSBS_029 (NEON RGB, 0.1 m; the demo raster)": (ROOT / "resources" / "OSBS_029.tif", 200),
    "drone orthophoto (RGBA, 2 cm)": (ROOT.parent / "shared" / "data" / "geotiff" / "drone_orthophoto_rgba_utm33n.tif", 240),
}
PANEL_LR = 48  # LR pixels per side of a figure panel


def read_rgb(path: Path, window: int) -> np.ndarray:
    """The central window x window of bands 1-3 as uint8 (3, h, w)."""
    ds = gdal.Open(str(path))
    if ds is None:
        raise SystemExit(f"cannot open {path}")
    x0, y0 = (ds.RasterXSize - window) // 2, (ds.RasterYSize - window) // 2
    return np.stack([ds.GetRasterBand(b).ReadAsArray(x0, y0, window, window) for b in (1, 2, 3)])


def bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    t = torch.from_numpy(lr.astype(np.float32) / 255)[None]
    size = (lr.shape[1] * scale, lr.shape[2] * scale)
    return resize_bicubic(t, size, quantize=False)[0].numpy() * 255


def label(img: Image.Image, text: str) -> Image.Image:
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, img.width, 14], fill=(0, 0, 0))
    draw.text((3, 1), text, fill=(255, 255, 255))
    return img


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=FOLDER")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "docs"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    models = {}
    for item in args.model:
        name, _, folder = item.partition("=")
        models[name] = None if folder == "auto" else SuperResolver(folder, device="cpu", threads=args.threads)
    picks: dict[str, str] = {}
    out = Path(args.out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    s = args.scale
    rows, table = [], {}
    for title, (path, window) in RASTERS.items():
        if not path.is_file():
            print(f"skipping {title}: {path} not found")
            continue
        lr = read_rgb(path, window)
        outputs = {"bicubic": bicubic(lr, s)}
        for name, engine in models.items():
            if engine is None:  # auto: the weights `sr` would mix for this whole raster (its code)
                looks = auto_decision(path)
                picks[title] = looks.describe()
                folder = aware_folder("auto")
                engine = open_engine(code_spec(str(folder), looks.code), device="cpu", threads=args.threads)
            sr = engine.upscale(lr.astype(np.float32) / 255, (lr.shape[1] * s, lr.shape[2] * s))
            outputs[name] = np.round(sr * 255)
        table[title] = {}
        for name, sr in outputs.items():
            scores = artefact_scores(lr, np.clip(np.round(sr), 0, 255))
            table[title][name] = {"overshoot_dn": scores.overshoot_dn, "overshoot_share": scores.overshoot_share,
                                  "hf_energy_pct": scores.hf_energy_pct}
        cy = cx = window // 2 - PANEL_LR // 2
        crop = (slice(cy * s, (cy + PANEL_LR) * s), slice(cx * s, (cx + PANEL_LR) * s))
        nearest = lr[:, cy:cy + PANEL_LR, cx:cx + PANEL_LR].repeat(s, 1).repeat(s, 2)
        panels = [label(Image.fromarray(nearest.transpose(1, 2, 0)), "input (nearest)")]
        for name, sr in outputs.items():
            arr = np.clip(np.round(sr[:, crop[0], crop[1]]), 0, 255).astype(np.uint8).transpose(1, 2, 0)
            panels.append(label(Image.fromarray(arr), name))
        row = Image.new("RGB", (sum(p.width for p in panels) + 4 * (len(panels) - 1), panels[0].height + 16), "white")
        x = 0
        for p in panels:
            row.paste(p, (x, 16))  # the row's title strip above, the panels' own labels stay visible
            x += p.width + 4
        rows.append(label(row, f"{title}, x{s}"))
    figure = Image.new("RGB", (max(r.width for r in rows), sum(r.height + 6 for r in rows)), "white")
    y = 0
    for r in rows:
        figure.paste(r, (0, y))
        y += r.height + 6
    figure.save(out / "real_rasters.png")
    (out / "results" / "real_rasters.json").write_text(json.dumps({"scale": s, "scores": table, "auto": picks},
                                                                  indent=2))
    lines = [f"# Real rasters, no ground truth: artefact indicators at x{s}", "",
             "Central window of each raster (bands 1-3), `scripts/real_rasters.py`; indicators in "
             "`mlin_qgis/ml/artefacts.py`. Overshoot: rms DN outside the 3x3 input range around each output "
             "pixel (ringing, halos; lower is cleaner). New HF: % of output AC energy above the input's "
             "Nyquist frequency (invented detail, real or not: read it beside overshoot).", ""]
    for title, scores in table.items():
        lines += [f"## {title}", ""]
        if title in picks:
            lines += [f"`--model auto` on this whole raster: {picks[title]}", ""]
        lines += ["| method | overshoot (DN rms) | share > 2 DN | new HF energy (%) |", "|---|---:|---:|---:|"]
        lines += [f"| {n} | {v['overshoot_dn']:.2f} | {100 * v['overshoot_share']:.2f} % | {v['hf_energy_pct']:.2f} |"
                  for n, v in scores.items()]
        lines.append("")
    (out / "results" / "real_rasters.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
