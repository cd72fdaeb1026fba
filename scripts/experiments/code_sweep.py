"""Dev: PSNR gain over bicubic at x2 for codes whose aliasing is set to fixed values (others estimated)."""
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from mlin_qgis.ml.degradation import make_lr, suite_degradation
from mlin_qgis.ml.images import list_images, load_image
from mlin_qgis.ml.train_aware import AwareTrainConfig, build

torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
def psnr(a, b, s):
    a, b = a[..., s:-s, s:-s], b[..., s:-s, s:-s]
    return 10 * math.log10(1 / max(F.mse_loss(a, b).item(), 1e-12))
cfg = AwareTrainConfig.from_yaml("configs/aware_mlin.yaml")
cfg.init_weights = sys.argv[1]
model = build(cfg).eval()
paths = list_images(cfg.data_root, cfg.dev_split, cfg.split_file)[::3]
ALS = [None, 0.25, 0.5, 0.75, 1.0]
out = {"images": [p.stem for p in paths], "alias_values": ALS, "cells": {}}
t0 = time.time()
with torch.no_grad():
    for name, s in [("bicubic", 2.0), ("bicubic-aliased", 2.0), ("jpeg", 2.0)]:
        rows = []
        for i, p in enumerate(paths):
            hr = torch.from_numpy(load_image(p)).permute(2, 0, 1).float().div(255).unsqueeze(0)[..., :256, :256]
            chain = suite_degradation(name, s, i)
            lr = make_lr(hr, (round(hr.shape[2] / s), round(hr.shape[3] / s)), chain)
            bic = psnr(F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1), hr, 2)
            est = torch.sigmoid(model.code_logits(lr))
            row = {"est": [round(float(v), 3) for v in est[0]], "bic": bic, "gain": []}
            for a in ALS:
                code = est.clone()
                if a is not None:
                    code[0, 0] = a
                row["gain"].append(psnr(model.super_resolve(lr, hr.shape[-2:], code).clamp(0, 1), hr, 2) - bic)
            rows.append(row)
        out["cells"][f"{name}-x2"] = rows
        g = np.array([r["gain"] for r in rows])
        print(name, "mean", np.round(g.mean(0), 3),
          "below", (g < 0).sum(0), "worst", np.round(g.min(0), 2), f"{time.time()-t0:.0f}s", flush=True)
json.dump(out, open(sys.argv[3] if len(sys.argv) > 3 else "runs/sweep/sweep.json", "w"))
