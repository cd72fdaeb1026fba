"""Experiment: the estimator refitted alone on big crops (96 LR px for x1-2.67, 48 for x2.67-5, 2:1, cosine
rate), with the top-20% pooling (--pool top) or a learned attention pooling (per-position confidence,
softmax over all positions; --pool attn). `--large-only --smin 1.2 --smax 3.0 --its 300 --constant-lr
--seed 77 --eval-every 100 --pool top` is the first refit (96 px crops only)."""
import argparse
import copy
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlin_qgis.ml.data import CropSource, SamplerConfig, training_images
from mlin_qgis.ml.degradation import make_lr, suite_degradation
from mlin_qgis.ml.estimator import degradation_targets, pool_logits
from mlin_qgis.ml.images import list_images, load_image
from mlin_qgis.ml.train_aware import AwareTrainConfig, build

ap = argparse.ArgumentParser()
ap.add_argument("--weights", default="checkpoints/aware-mlin.fp16.pth")
ap.add_argument("--pool", default="attn", choices=["attn", "top"])
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--its", type=int, default=1500)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--seed", type=int, default=78)
ap.add_argument("--out", required=True)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--large-only", action="store_true", help="96 px crops only (no 48 px batches for x2.67-5)")
ap.add_argument("--smin", type=float, default=1.0)
ap.add_argument("--smax", type=float, default=2.67)
ap.add_argument("--constant-lr", action="store_true")
ap.add_argument("--eval-every", type=int, default=500)
a = ap.parse_args()
torch.set_num_threads(a.threads)
cfg = AwareTrainConfig.from_yaml("configs/aware_mlin.yaml")
cfg.init_weights = a.weights
model = build(cfg)
old = model.estimator

class AttnEst(nn.Module):
    def __init__(self, old):
        super().__init__()
        self.old = copy.deepcopy(old)
        w = self.old.body[-1].in_channels
        self.conf = nn.Conv2d(w, 4, 1)
        nn.init.zeros_(self.conf.weight)
        nn.init.zeros_(self.conf.bias)
    def maps(self, lr):
        x = (lr - 0.5) / 0.5
        high = (x - F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)) * 8.0
        f = self.old.body[:-1](torch.cat((x, high), 1))
        return self.old.body[-1](f).flatten(2), self.conf(f).flatten(2)
    def forward(self, lr):
        logits, conf = self.maps(lr)
        if a.pool == "top":
            return pool_logits(logits)
        return (torch.softmax(conf, -1) * logits).sum(-1)
est = AttnEst(old)

@torch.no_grad()
def separation():
    est.eval()
    paths = list_images(cfg.data_root, cfg.dev_split, cfg.split_file)
    res = {}
    for name, s in [("bicubic", 2.0), ("bicubic-aliased", 2.0), ("jpeg", 2.0), ("bicubic", 4.0), ("bicubic-aliased", 4.0), ("jpeg", 4.0)]:
        vals = []
        for i, p in enumerate(paths):
            hr = torch.from_numpy(load_image(p)).permute(2, 0, 1).float().div(255).unsqueeze(0)[..., :256, :256]
            chain = suite_degradation(name, s, i)
            lr = make_lr(hr, (round(hr.shape[2] / s), round(hr.shape[3] / s)), chain)
            vals.append(torch.sigmoid(est(lr))[0].tolist())
        res[f"{name}-x{s:g}"] = vals
    est.train()
    c, al = np.array(res["bicubic-x2"])[:, 0], np.array(res["bicubic-aliased-x2"])[:, 0]
    summ = {"clean_x2_max": float(c.max()), "clean_x2_mean": float(c.mean()), "aliased_x2_mean": float(al.mean()),
            "aliased_x2_below_.3": int((al < 0.3).sum()), "aliased_x2_below_clean_max": int((al <= c.max()).sum()),
            "auc_x2": float((al[:, None] > c[None, :]).mean()),
            "aliased_x4_mean": float(np.array(res["bicubic-aliased-x4"])[:, 0].mean()),
            "clean_x4_max": float(np.array(res["bicubic-x4"])[:, 0].max()),
            "jpeg_x2_alias_mean": float(np.array(res["jpeg-x2"])[:, 0].mean()),
            "jpeg_x4_alias_max": float(np.array(res["jpeg-x4"])[:, 0].max()),
            "jpeg_x2_comp_mean": float(np.array(res["jpeg-x2"])[:, 3].mean())}
    return res, summ

t0 = time.time()
res, summ = separation()
print("start", json.dumps({k: round(v, 3) for k, v in summ.items()}), flush=True)
log = [{"it": 0, **summ}]
paths = training_images(cfg.data_root, cfg.split, cfg.split_file)
big = CropSource(paths, SamplerConfig(lr_size=96, scale_min=a.smin, scale_max=a.smax, sample_q=16), a.seed, cfg.degradation)
small = CropSource(paths, SamplerConfig(lr_size=48, scale_min=2.67, scale_max=5.0, sample_q=16), a.seed + 1, cfg.degradation)
opt = torch.optim.Adam(est.parameters(), lr=a.lr)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.its, eta_min=a.lr * (1.0 if a.constant_lr else 0.05))
run = 0.0
for it in range(a.its):
    src = big if (it % 3 or a.large_only) else small  # two thirds at x1-2.67
    crops = [src.crop_with_chain(it * a.batch + k) for k in range(a.batch)]
    lr = torch.stack([c[0] for c in crops])
    tg = torch.stack([degradation_targets(c[2], c[3]) for c in crops])
    loss = F.binary_cross_entropy_with_logits(est(lr), tg)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    run = loss.item() if it == 0 else 0.98 * run + 0.02 * loss.item()
    if (it + 1) % 100 == 0:
        print(it + 1, round(run, 4), f"{time.time()-t0:.0f}s", flush=True)
    if (it + 1) % a.eval_every == 0 or it + 1 == a.its:
        res, summ = separation()
        log.append({"it": it + 1, **summ})
        print("eval", it + 1, json.dumps({k: round(v, 3) for k, v in summ.items()}), flush=True)
        torch.save(est.state_dict(), a.out + ".estimator.pth")
json.dump({"args": vars(a), "log": log, "last": res}, open(a.out, "w"))
