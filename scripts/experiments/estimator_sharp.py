"""Experiment (chunk 5): the estimator refitted alone with sharper clean content, so that sharpness stops
reading as aliasing (the drone tiles read 0.48-0.97 aliased when clean) while smooth aliased images still
read aliased. Two HR augmentations, applied before the crop's own degradation chain (its labels unchanged):

  --p-shrink P   the HR image is first shrunk by U(1.3, 2.2) with the antialiased bicubic: the same scene at
                 a coarser ground resolution, crisper per pixel (UC Merced's 30 cm photos are soft at 1:1)
  --p-sharp P    the HR crop is unsharp-masked (amount U(0.3, 1.5), sigma U(0.6, 1.5) HR px)

  --context D,D  context blocks (dilated, zero-started) widen the estimator's view from 19 LR px

Crops as the finishing stage (96 LR px at x1-2.67 twice, 48 px at x2.67-5 once), cosine rate. Judged on
the dev split (63 images: clean/aliased x2/x4 aliasing scores; the same with dev HR shrunk x2 first, a
sharp proxy) and on Set5's clean LR (the off-UC Merced set used for choices). Writes OUT.json, the
estimator's state (OUT.estimator.pth) and the full weights with it swapped in (OUT.fp16.pth).

    python scripts/experiments/estimator_sharp.py --p-shrink 0.3 --p-sharp 0.2 --out runs/c5/est_a"""
from __future__ import annotations

import argparse
import copy
import glob
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mlin_qgis.ml.data import CropSource, SamplerConfig, training_images
from mlin_qgis.ml.degradation import Degradation, blur, gaussian_kernel, make_lr, suite_degradation
from mlin_qgis.ml.estimator import DegradationEstimator, degradation_targets
from mlin_qgis.ml.images import list_images, load_image
from mlin_qgis.ml.resize import resize_bicubic
from mlin_qgis.ml.train_aware import AwareTrainConfig, build

ap = argparse.ArgumentParser()
ap.add_argument("--weights", default="checkpoints/aware-mlin.fp16.pth")
ap.add_argument("--p-shrink", type=float, default=0.0)
ap.add_argument("--p-sharp", type=float, default=0.0)
ap.add_argument("--its", type=int, default=1500)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--seed", type=int, default=91)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--eval-every", type=int, default=500)
ap.add_argument("--big", action="store_true", help="128 px LR crops at x1-2 (a whole 256 px image), 96 px at "
                "x2-2.67, 48 px at x2.67-5: codes of rasters, not of 96 px crops")
ap.add_argument("--pos-weight", type=float, default=1.0, help="BCE weight of positive evidence (aliasing etc.)")
ap.add_argument("--context", default="", help="dilations of context blocks to add, e.g. 2,4 (a wider view)")
ap.add_argument("--out", required=True)
a = ap.parse_args()
torch.set_num_threads(a.threads)
cfg = AwareTrainConfig.from_yaml("configs/aware_mlin.yaml")
cfg.init_weights = a.weights
model = build(cfg)
est = copy.deepcopy(model.estimator).train()
context = [int(d) for d in a.context.split(",") if d]
if context:  # the trained estimator with context blocks at identity
    wide = DegradationEstimator(cfg.estimator_width, cfg.estimator_pooling, context)
    wide.load_state_dict(est.state_dict(), strict=False)
    est = wide.train()


def augmented(source: CropSource, crop_id: int, rng: np.random.Generator):
    """(LR, targets) of a crop whose HR may be shrunk and/or sharpened before its chain."""
    _, hr, chain, scale = source.crop_with_chain(crop_id)
    x = hr.float().div(255).unsqueeze(0)
    lr_side = source.cfg.lr_size
    if rng.random() < a.p_shrink:
        f = rng.uniform(1.3, 2.2)
        side = max(lr_side + 1, round(x.shape[-1] / f))
        x = resize_bicubic(x, (side, side)).clamp(0, 1)
        scale = side / lr_side
        if chain.blur_sigma is not None:  # the chain's blur was drawn in HR px at the old scale
            chain = Degradation(**{**chain.__dict__, "blur_sigma": tuple(v / f if i < 2 else v for i, v in
                                                                           enumerate(chain.blur_sigma))})
    if rng.random() < a.p_sharp:
        s = rng.uniform(0.6, 1.5)
        x = (x + rng.uniform(0.3, 1.5) * (x - blur(x, gaussian_kernel(s, s)))).clamp(0, 1)
    lr = make_lr(x, (lr_side, lr_side), chain)[0]
    return lr, degradation_targets(chain, scale)


@torch.no_grad()
def judge() -> dict:
    est.eval()
    paths = list_images(cfg.data_root, cfg.dev_split, cfg.split_file)
    out = {}
    for shrink in (1, 2):
        rows = []
        for i, p in enumerate(paths):
            hr = torch.from_numpy(load_image(p)).permute(2, 0, 1).float().div(255).unsqueeze(0)[..., :256, :256]
            if shrink > 1:
                hr = resize_bicubic(hr, (256 // shrink, 256 // shrink)).clamp(0, 1)
            r = []
            for name, s in (("bicubic", 2.0), ("bicubic-aliased", 2.0), ("bicubic", 4.0), ("bicubic-aliased", 4.0)):
                side = round(hr.shape[-1] / s)
                r.append(torch.sigmoid(est(make_lr(hr, (side, side), suite_degradation(name, s, i))))[0, 0].item())
            rows.append(r)
        rows = np.array(rows)
        tag = "dev" if shrink == 1 else "devsharp"
        for j, c in enumerate(("clean2", "alias2", "clean4", "alias4")):
            out[f"{tag}_{c}_mean"] = float(rows[:, j].mean())
            out[f"{tag}_{c}_{'above' if 'clean' in c else 'below'}_.5"] = int(
                ((rows[:, j] > 0.5) if "clean" in c else (rows[:, j] < 0.5)).sum())
        out[f"{tag}_auc_x2"] = float((rows[:, 1][:, None] > rows[:, 0][None, :]).mean())
    set5 = []
    for f in sorted(glob.glob("../shared/data/natural/Set5/*.png")):
        hr = torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1).float().div(255)[None]
        for s in (2, 4):
            set5.append(torch.sigmoid(est(resize_bicubic(hr, (round(hr.shape[2] / s), round(hr.shape[3] / s)))))[0, 0].item())
    out["set5_clean_alias_max"], out["set5_clean_alias_mean"] = float(max(set5)), float(np.mean(set5))
    est.train()
    return {k: round(v, 3) for k, v in out.items()}


t0 = time.time()
record = [{"it": 0, **judge()}]
print(json.dumps(record[-1]), flush=True)
paths = training_images(cfg.data_root, cfg.split, cfg.split_file)
sizes = ([(128, 1.0, 2.0), (96, 2.0, 2.67), (48, 2.67, 5.0)] if a.big else
         [(96, 1.0, 2.67), (96, 1.0, 2.67), (48, 2.67, 5.0)])
sources = [CropSource(paths, SamplerConfig(lr_size=n, scale_min=lo, scale_max=hi, sample_q=16), a.seed + i, cfg.degradation)
           for i, (n, lo, hi) in enumerate(sizes)]
opt = torch.optim.Adam(est.parameters(), lr=a.lr)
run = 0.0
for it in range(a.its):
    for g in opt.param_groups:
        g["lr"] = a.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * it / a.its)))
    rng = np.random.default_rng([a.seed, 7, it])
    pairs = [augmented(sources[it % 3], it * a.batch + k, rng) for k in range(a.batch)]
    loss = F.binary_cross_entropy_with_logits(est(torch.stack([p[0] for p in pairs])), torch.stack([p[1] for p in pairs]),
                                              pos_weight=torch.full((4,), a.pos_weight))
    opt.zero_grad()
    loss.backward()
    opt.step()
    run = loss.item() if it == 0 else 0.98 * run + 0.02 * loss.item()
    if (it + 1) % 100 == 0:
        print(it + 1, round(run, 4), f"{time.time() - t0:.0f}s", flush=True)
    if (it + 1) % a.eval_every == 0 or it + 1 == a.its:
        record.append({"it": it + 1, "loss": round(run, 4), **judge()})
        print(json.dumps(record[-1]), flush=True)
json.dump({"args": vars(a), "record": record}, open(a.out + ".json", "w"), indent=1)
torch.save(est.state_dict(), a.out + ".estimator.pth")
state = torch.load(a.weights, map_location="cpu", weights_only=True)
for k, v in est.state_dict().items():
    state["state_dict"]["estimator." + k] = v.half()
state["config"]["estimator_context"] = context
torch.save(state, a.out + ".fp16.pth")
