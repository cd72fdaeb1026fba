"""Experiment (chunk 4): weight-space interpolation of the aware model's experts towards the official LIIF
(mlin_qgis/ml/toward_liif.py, WiSE-FT's idea). Scored on dev (PSNR over bicubic, the estimated code) and on Set5
(against LIIF), never on val, Set14 or the geotiff tiles.

    python scripts/experiments/wise_liif.py WEIGHTS --alphas 1,0.5,0 --experts clean --out X.json
    python scripts/experiments/wise_liif.py WEIGHTS --sets "clean=1;clean=0.5,robust=0.5" --out X.json"""
import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from mlin_qgis.ml.degradation import make_lr, suite_degradation
from mlin_qgis.ml.export_aware import load_aware
from mlin_qgis.ml.images import list_images, load_image
from mlin_qgis.ml.mixture import _key
from mlin_qgis.ml.model import load_model
from mlin_qgis.ml.toward_liif import interpolate_toward_liif
from mlin_qgis.ml.train_aware import AwareTrainConfig

ap = argparse.ArgumentParser()
ap.add_argument("weights")
ap.add_argument("--alphas", default="1,0.5,0")
ap.add_argument("--experts", default="clean", help="comma list of experts to interpolate, or 'all'")
ap.add_argument("--sets", default=None, help="instead of --alphas/--experts: 'clean=0.5,robust=0.75;clean=0.5;...'")
ap.add_argument("--every", type=int, default=3)
ap.add_argument("--out", required=True)
a = ap.parse_args()
torch.set_num_threads(1)
model = load_aware(a.weights).eval()
liif = load_model("../shared/weights/edsr-baseline-liif.pth").eval()
names = model.cfg.experts if a.experts == "all" else a.experts.split(",")
start = {n: model.experts[_key(n)].detach().clone() for n in model.names}


def psnr(x: torch.Tensor, y: torch.Tensor, shave: int) -> float:
    x, y = x[..., shave:-shave, shave:-shave], y[..., shave:-shave, shave:-shave]
    return 10 * math.log10(1 / max(F.mse_loss(x, y).item(), 1e-12))


cfg = AwareTrainConfig.from_yaml("configs/aware_mlin.yaml")
dev = list_images(cfg.data_root, cfg.dev_split, cfg.split_file)[:: a.every]
set5 = sorted(list_images("../shared/data/natural/Set5"))
DEV_CELLS = [("bicubic", 2.0), ("bicubic", 4.0), ("bicubic-aliased", 2.0), ("jpeg", 2.0)]


def load(p, crop256: bool) -> torch.Tensor:
    hr = torch.from_numpy(load_image(p)).permute(2, 0, 1).float().div(255).unsqueeze(0)
    return hr[..., :256, :256] if crop256 else hr


@torch.no_grad()
def score() -> dict:
    out: dict = {}
    for i, p in enumerate(dev):
        hr = load(p, True)
        for name, s in DEV_CELLS:
            lr = make_lr(hr, (round(hr.shape[2] / s), round(hr.shape[3] / s)), suite_degradation(name, s, i))
            bic = F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
            g = psnr(model.super_resolve(lr, hr.shape[-2:]).clamp(0, 1), hr, math.ceil(s)) - psnr(bic, hr, math.ceil(s))
            out.setdefault(f"dev {name}-x{s:g}", []).append(g)
    for p in set5:
        for s in (2.0, 4.0):
            hr = load(p, False)
            h, w = hr.shape[2] // int(s) * int(s), hr.shape[3] // int(s) * int(s)
            hr = hr[..., :h, :w]
            lr = make_lr(hr, (h // int(s), w // int(s)), suite_degradation("bicubic", s, 0))
            ref = liif.super_resolve(lr, hr.shape[-2:]).clamp(0, 1)
            out.setdefault(f"set5 x{s:g} vs liif", []).append(
                psnr(model.super_resolve(lr, hr.shape[-2:]).clamp(0, 1), hr, math.ceil(s)) - psnr(ref, hr, math.ceil(s)))
    return out


if a.sets:
    plans = [{k: float(v) for k, v in (kv.split("=") for kv in one.split(","))} for one in a.sets.split(";")]
else:
    plans = [{n: float(x) for n in names} for x in a.alphas.split(",")]
results = {}
for keep in plans:
    alpha = ",".join(f"{k}={v:g}" for k, v in keep.items())
    t0 = time.time()
    with torch.no_grad():
        for n in model.names:
            model.experts[_key(n)].copy_(start[n])
    interpolate_toward_liif(model, liif, keep)
    res = score()
    results[alpha] = res
    print(f"alpha {alpha} ({time.time() - t0:.0f} s): " + "  ".join(
        f"{k} {np.mean(v):+.3f}" for k, v in res.items()), flush=True)
    json.dump({"weights": a.weights, "experts": names, "results": results}, open(a.out, "w"))
