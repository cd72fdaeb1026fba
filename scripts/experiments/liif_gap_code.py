"""Clean LR of natural photos (a glob, e.g. Set5): the aware weights with their own code and with the
aliasing score forced to 0, each minus the official LIIF (RGB PSNR, shave = scale).

    python scripts/experiments/liif_gap_code.py WEIGHTS "../shared/data/natural/Set5/*.png" [2,4]"""
import glob
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mlin_qgis.ml.model import load_model
from mlin_qgis.ml.resize import resize_bicubic
from mlin_qgis.ml.train_aware import AwareTrainConfig, build

torch.set_num_threads(1)
cfg = AwareTrainConfig.from_yaml("configs/aware_mlin.yaml")
cfg.init_weights = sys.argv[1]
model = build(cfg).eval()
liif = load_model("../shared/weights/edsr-baseline-liif.pth").eval()
files = sorted(glob.glob(sys.argv[2]))
scales = [float(x) for x in sys.argv[3].split(",")] if len(sys.argv) > 3 else [2.0, 4.0]


def psnr(a: torch.Tensor, b: torch.Tensor, shave: int) -> float:
    a, b = a[..., shave:-shave, shave:-shave], b[..., shave:-shave, shave:-shave]
    return 10 * math.log10(1 / F.mse_loss(a, b).item())


with torch.no_grad():
    for s in scales:
        rows = []
        for f in files:
            hr = torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1).float().div(255)[None]
            h, w = hr.shape[2] // int(s) * int(s), hr.shape[3] // int(s) * int(s)
            hr = hr[..., :h, :w]
            lr = resize_bicubic(hr, (int(h / s), int(w / s)))
            scores = torch.sigmoid(model.code_logits(lr))
            zeroed = scores.clone()
            zeroed[0, 0] = 0
            own = psnr(model.super_resolve(lr, (h, w)).clamp(0, 1), hr, int(s))
            forced = psnr(model.super_resolve(lr, (h, w), zeroed).clamp(0, 1), hr, int(s))
            ref = psnr(liif.super_resolve(lr, (h, w)).clamp(0, 1), hr, int(s))
            rows.append((own - ref, forced - ref))
            print(f"{f.split('/')[-1][:16]:16s} x{s:g} aliasing {scores[0, 0]:.2f}  own code − LIIF {own - ref:+.2f}  "
                  f"aliasing 0 − LIIF {forced - ref:+.2f}", flush=True)
        d = np.array(rows)
        print(f"x{s:g} mean: own code − LIIF {d[:, 0].mean():+.3f}, aliasing 0 − LIIF {d[:, 1].mean():+.3f}")
