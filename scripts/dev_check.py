"""Dev-split check of aware-model weights (choices are made here, never on val): PSNR over bicubic per
cell (clean, aliased, JPEG, noise and blur at x2 and x4; mixed at x2) on whole dev images, with the code
the model estimates and, for aliased x2, with the true code too (how much a perfect estimator would add).

Usage: python scripts/dev_check.py WEIGHTS.fp16.pth [--every 3] [--cells a-x2,b-x4] [--out result.json]"""
from __future__ import annotations

import argparse
import json
import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from mlin_qgis.ml.degradation import make_lr, suite_degradation
from mlin_qgis.ml.estimator import degradation_targets
from mlin_qgis.ml.images import list_images, load_image
from mlin_qgis.ml.train_aware import AwareTrainConfig, build

log = logging.getLogger("dev_check")
CELLS = [("bicubic", 2.0), ("bicubic-aliased", 2.0), ("jpeg", 2.0), ("bicubic", 4.0), ("bicubic-aliased", 4.0),
         ("jpeg", 4.0), ("noise", 2.0), ("noise", 4.0), ("mixed", 2.0),  # these three from chunk 3 on
         ("blur", 2.0), ("blur", 4.0)]  # from chunk 4 on (val's suite found chunk 4 lost 0.2-0.3 dB there)


def psnr(a: torch.Tensor, b: torch.Tensor, shave: int) -> float:
    a, b = a[..., shave:-shave, shave:-shave], b[..., shave:-shave, shave:-shave]
    return 10 * math.log10(1 / max(F.mse_loss(a, b).item(), 1e-12))


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights")
    ap.add_argument("--config", default="configs/aware_mlin.yaml")
    ap.add_argument("--every", type=int, default=3, help="take every n-th dev image (3: 21 of 63)")
    ap.add_argument("--cells", default=None, help="only these cells, e.g. bicubic-x2,bicubic-aliased-x2 (default: all)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cells = [c for c in CELLS if args.cells is None or f"{c[0]}-x{c[1]:g}" in args.cells.split(",")]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = AwareTrainConfig.from_yaml(args.config)
    cfg.init_weights = args.weights
    stored = torch.load(args.weights, map_location="cpu", weights_only=True).get("config", {})
    cfg.estimator_pooling = stored.get("estimator_pooling") or [0.2] * 4  # the weights' own pooling
    cfg.estimator_context = stored.get("estimator_context") or []
    model = build(cfg).eval()
    paths = list_images(cfg.data_root, cfg.dev_split, cfg.split_file)[:: args.every]
    gains: dict = {f"{n}-x{s:g}": [] for n, s in cells}
    if ("bicubic-aliased", 2.0) in cells:
        gains["bicubic-aliased-x2-true-code"] = []
    for i, p in enumerate(paths):
        hr = torch.from_numpy(load_image(p)).permute(2, 0, 1).float().div(255).unsqueeze(0)[..., :256, :256]
        for name, s in cells:
            chain = suite_degradation(name, s, i)
            lr = make_lr(hr, (round(hr.shape[2] / s), round(hr.shape[3] / s)), chain)
            bic = psnr(F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1), hr,
                       math.ceil(s))
            gains[f"{name}-x{s:g}"].append(psnr(model.super_resolve(lr, hr.shape[-2:]).clamp(0, 1), hr, math.ceil(s)) - bic)
            if name == "bicubic-aliased" and s == 2.0:
                true = degradation_targets(chain, s)[None]
                gains["bicubic-aliased-x2-true-code"].append(
                    psnr(model.super_resolve(lr, hr.shape[-2:], true).clamp(0, 1), hr, 2) - bic)
        log.info("%d/%d %s", i + 1, len(paths), p.stem)
    summary = {}
    for key, values in gains.items():
        d = np.array(values)
        summary[key] = {"mean": round(float(d.mean()), 3), "se": round(float(d.std(ddof=1) / math.sqrt(len(d))), 3),
                        "below": int((d < 0).sum()), "worst": round(float(d.min()), 2)}
        log.info("%-30s %+.2f ± %.2f  below %d  worst %+.2f", key, d.mean(), summary[key]["se"], summary[key]["below"], d.min())
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"weights": args.weights, "images": [p.stem for p in paths], "gains": gains, "summary": summary}, f)


if __name__ == "__main__":
    main()
