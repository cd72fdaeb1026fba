"""Estimated codes (the weights' own pooling) on clean LR of off-UC Merced images and dev suite cells."""
import glob
import sys

import numpy as np
import torch
from PIL import Image

from mlin_qgis.ml.degradation import make_lr, suite_degradation
from mlin_qgis.ml.images import list_images, load_image
from mlin_qgis.ml.resize import resize_bicubic
from mlin_qgis.ml.train_aware import AwareTrainConfig, build

torch.set_num_threads(1)
cfg = AwareTrainConfig.from_yaml("configs/aware_mlin.yaml")
cfg.init_weights = sys.argv[1]
cfg.estimator_pooling = torch.load(sys.argv[1], map_location="cpu", weights_only=True)["config"].get("estimator_pooling") or [0.2] * 4
print("pooling", cfg.estimator_pooling)
model = build(cfg).eval()
est = model.estimator
with torch.no_grad():
    for f in sorted(glob.glob("runs/offucm/geotiff/*.png")) + sorted(glob.glob("../shared/data/natural/Set14/*.png")):
        hr = torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1).float().div(255)[None]
        r = []
        for s in (2, 4):
            lr = resize_bicubic(hr, (round(hr.shape[2] / s), round(hr.shape[3] / s)))
            r.append(" ".join(f"{v:.2f}" for v in torch.sigmoid(est(lr))[0]))
        print(f.split("/")[-1][:20].ljust(20), " | ".join(r))
    paths = list_images(cfg.data_root, cfg.dev_split, cfg.split_file)[::3]
    for name in ("bicubic", "bicubic-aliased", "noise", "mixed", "jpeg"):
        for s in (2.0, 4.0):
            v = []
            for i, p in enumerate(paths):
                hr = torch.from_numpy(load_image(p)).permute(2, 0, 1).float().div(255).unsqueeze(0)[..., :256, :256]
                lr = make_lr(hr, (round(256 / s), round(256 / s)), suite_degradation(name, s, i))
                v.append(torch.sigmoid(est(lr))[0].numpy())
            v = np.array(v)
            print(f"dev {name:16s} x{s:g} mean {v.mean(0).round(2)} max {v.max(0).round(2)} min {v.min(0).round(2)}")
