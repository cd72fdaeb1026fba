"""Estimator-only experiment: continue the estimator of committed weights on other crops; report its
separation of clean/aliased LR on all dev images (whole images, as a run reads them)."""
import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from mlin_qgis.ml.data import CropSource, SamplerConfig, training_images
from mlin_qgis.ml.degradation import make_lr, suite_degradation
from mlin_qgis.ml.estimator import degradation_targets
from mlin_qgis.ml.images import list_images, load_image
from mlin_qgis.ml.train_aware import AwareTrainConfig, build

ap = argparse.ArgumentParser()
ap.add_argument("--weights", default="checkpoints/aware-mlin.fp16.pth")
ap.add_argument("--lr-size", type=int, default=96)
ap.add_argument("--smin", type=float, default=1.2)
ap.add_argument("--smax", type=float, default=3.0)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--its", type=int, default=200)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--seed", type=int, default=77)
ap.add_argument("--out", required=True)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--eval-only", action="store_true")
a = ap.parse_args()
torch.set_num_threads(a.threads)
cfg = AwareTrainConfig.from_yaml("configs/aware_mlin.yaml")
cfg.init_weights = a.weights
model = build(cfg)
est = model.estimator

@torch.no_grad()
def separation():
    est.eval()
    paths = list_images(cfg.data_root, cfg.dev_split, cfg.split_file)
    res = {}
    for name, s in [("bicubic", 2.0), ("bicubic-aliased", 2.0), ("jpeg", 2.0), ("bicubic", 4.0), ("bicubic-aliased", 4.0)]:
        vals = []
        for i, p in enumerate(paths):
            hr = torch.from_numpy(load_image(p)).permute(2, 0, 1).float().div(255).unsqueeze(0)[..., :256, :256]
            chain = suite_degradation(name, s, i)
            lr = make_lr(hr, (round(hr.shape[2] / s), round(hr.shape[3] / s)), chain)
            vals.append(torch.sigmoid(est(lr))[0].tolist())
        res[f"{name}-x{s:g}"] = vals
    est.train()
    c, al = np.array(res["bicubic-x2"])[:, 0], np.array(res["bicubic-aliased-x2"])[:, 0]
    auc = float((al[:, None] > c[None, :]).mean())
    summ = {"clean_x2_max": float(c.max()), "clean_x2_mean": float(c.mean()), "aliased_x2_mean": float(al.mean()),
            "aliased_x2_below_.3": int((al < 0.3).sum()), "aliased_x2_below_clean_max": int((al <= c.max()).sum()),
            "auc_x2": auc, "aliased_x4_mean": float(np.array(res["bicubic-aliased-x4"])[:, 0].mean()),
            "clean_x4_max": float(np.array(res["bicubic-x4"])[:, 0].max()),
            "jpeg_x2_alias_mean": float(np.array(res["jpeg-x2"])[:, 0].mean()),
            "jpeg_x2_comp_mean": float(np.array(res["jpeg-x2"])[:, 3].mean())}
    return res, summ

t0 = time.time()
res, summ = separation()
print("start", json.dumps({k: round(v, 3) for k, v in summ.items()}), f"{time.time()-t0:.0f}s", flush=True)
log = [{"it": 0, **summ}]
if not a.eval_only:
    paths = training_images(cfg.data_root, cfg.split, cfg.split_file)
    src = CropSource(paths, SamplerConfig(lr_size=a.lr_size, scale_min=a.smin, scale_max=a.smax, sample_q=16), a.seed, cfg.degradation)
    opt = torch.optim.Adam(est.parameters(), lr=a.lr)
    run = 0.0
    for it in range(a.its):
        crops = [src.crop_with_chain(it * a.batch + k) for k in range(a.batch)]
        lr = torch.stack([c[0] for c in crops])
        tg = torch.stack([degradation_targets(c[2], c[3]) for c in crops])
        loss = F.binary_cross_entropy_with_logits(est(lr), tg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        run = loss.item() if it == 0 else 0.95 * run + 0.05 * loss.item()
        if (it + 1) % 25 == 0:
            print(it + 1, round(run, 4), f"{time.time()-t0:.0f}s", flush=True)
        if (it + 1) % 100 == 0 or it + 1 == a.its:
            res, summ = separation()
            log.append({"it": it + 1, **summ})
            print("eval", it + 1, json.dumps({k: round(v, 3) for k, v in summ.items()}), flush=True)
            torch.save(est.state_dict(), a.out + ".estimator.pth")
json.dump({"args": vars(a), "log": log, "last": res}, open(a.out, "w"))
