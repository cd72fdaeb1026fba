"""Why does the meta-weight network not beat the area weights? Two measurements.

`headroom CKPT`: with a model's four per-neighbour colours fixed, PSNR of (a) the model's own mixing,
(b) LIIF's area weights, (c) an oracle that picks the best single neighbour per pixel and (d) the
best convex weights per pixel (fitted to the target). (c)/(d) use the ground truth, so they bound
what any mixing could gain, predictable or not.

`head-only CKPT`: freeze the checkpoint's decoder MLP and train only a fresh meta head on top of it
(so the MLP cannot co-adapt), with an L1 (as in training) or L2 loss; report the paired held-out
L1/PSNR change against the area weights on the same batches. If content-adaptive mixing had an easily learnable gain, it shows up here.

Usage: .venv/bin/python scripts/meta_diagnostics.py headroom runs/liif-area/checkpoint.pth
       .venv/bin/python scripts/meta_diagnostics.py head-only runs/liif-area/checkpoint.pth --lr 1e-2
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F

from mlin_qgis.ml.data import CropSource, FeatureBank, SamplerConfig, training_images
from mlin_qgis.ml.decoder import DecoderConfig, ImplicitDecoder, pixel_query_grid
from mlin_qgis.ml.images import list_images, load_image
from mlin_qgis.ml.metrics import psnr as _psnr  # the evaluation protocol's PSNR
from mlin_qgis.ml.model import load_model
from mlin_qgis.ml.resize import resize_bicubic


def headroom(args: argparse.Namespace) -> None:
    model = load_model(args.checkpoint).eval()
    paths = list_images(args.data)[:: args.every][: args.images]
    for s in args.scales:
        res = {k: [] for k in ("model", "area", "best single", "best convex")}
        for path in paths:
            full = torch.from_numpy(load_image(path)).permute(2, 0, 1).float().div(255)
            h, w = full.shape[1] - full.shape[1] % int(s), full.shape[2] - full.shape[2] % int(s)
            hr = full[:, :h, :w]
            lr = resize_bicubic(hr[None], (round(h / s), round(w / s)))
            with torch.no_grad():
                proj = model.decoder.project(model.encode(lr))
                coord, cell = pixel_query_grid(lr.shape[-2:], (h, w))
                rgb, _, area = model.decoder.query(proj, coord[None], cell[None])
                neighbours = model.decoder.neighbour_colours(proj, coord[None], cell[None])
            preds = neighbours[0] * model.input_std + model.input_mean  # (N, 4, 3)
            target = hr.permute(1, 2, 0).reshape(-1, 3)

            def image(x: torch.Tensor) -> torch.Tensor:
                return x.reshape(h, w, 3).permute(2, 0, 1)

            shave = math.ceil(s)
            res["model"].append(_psnr(image(rgb[0] * model.input_std + model.input_mean), hr, shave))
            res["area"].append(_psnr(image((preds * area[0][..., None]).sum(1)), hr, shave))
            err = ((preds - target[:, None]) ** 2).sum(-1)
            res["best single"].append(_psnr(image(preds[torch.arange(len(preds)), err.argmin(1)]), hr, shave))
            logits = torch.log(area[0]).clone().requires_grad_(True)
            opt = torch.optim.Adam([logits], lr=0.3)
            for _ in range(150):
                loss = (((preds * torch.softmax(logits, -1)[..., None]).sum(1) - target) ** 2).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                res["best convex"].append(_psnr(image((preds * torch.softmax(logits, -1)[..., None]).sum(1)), hr, shave))
        print(f"x{s:g} ({len(paths)} images): " + ", ".join(f"{k} {np.mean(v):.3f} dB" for k, v in res.items()))


def head_only(args: argparse.Namespace) -> None:
    base = load_model(args.checkpoint).eval()
    cfg = DecoderConfig(**{**asdict(base.decoder.cfg), "weighting": "meta"})
    dec = ImplicitDecoder(cfg)
    dec.imnet.load_state_dict(base.decoder.imnet.state_dict())
    for p in dec.imnet.parameters():
        p.requires_grad = False
    opt = torch.optim.Adam(dec.meta.parameters(), lr=args.lr)
    source = CropSource(training_images(args.train, None, None), SamplerConfig(), seed=7)
    bank = FeatureBank(source, lambda lr: base.encode(lr), 512)
    bank.fill(512)
    norm = lambda t: (t - base.input_mean) / base.input_std  # noqa: E731
    for it in range(args.iterations):
        b = bank.batch(np.random.default_rng([7, it]), 8, 2304, 48)
        with torch.no_grad():
            proj = dec.project(b.feat)
        loss_fn = F.l1_loss if args.loss == "l1" else F.mse_loss
        loss = loss_fn(dec.query(proj, b.coord, b.cell)[0], norm(b.target))
        opt.zero_grad()
        loss.backward()
        opt.step()
        bank.refresh(2)
    l1 = {"meta": [], "area": []}
    mse = {"meta": [], "area": []}
    with torch.no_grad():
        for it in range(20):
            b = bank.batch(np.random.default_rng([99, it]), 8, 2304, 48)
            proj = dec.project(b.feat)
            for name, out in (("meta", dec.query(proj, b.coord, b.cell)[0]),
                              ("area", base.decoder.query(proj, b.coord, b.cell)[0])):
                l1[name].append(F.l1_loss(out, norm(b.target)).item())
                mse[name].append(F.mse_loss(out, norm(b.target)).item())
    gain = 10 * math.log10(np.mean(mse["area"]) / np.mean(mse["meta"]))
    print(f"head-only, {args.loss} loss, lr {args.lr:g}, {args.iterations} iterations: held-out L1 meta {np.mean(l1['meta']):.6f} "
          f"vs area {np.mean(l1['area']):.6f}; PSNR change {gain:+.4f} dB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("headroom")
    h.add_argument("checkpoint")
    h.add_argument("--data", default="../shared/data/ucmerced/val")
    h.add_argument("--every", type=int, default=21, help="take every Nth image")
    h.add_argument("--images", type=int, default=10)
    h.add_argument("--scales", type=float, nargs="+", default=[2.0, 4.0])
    o = sub.add_parser("head-only")
    o.add_argument("checkpoint")
    o.add_argument("--train", default="../shared/data/ucmerced/train")
    o.add_argument("--lr", type=float, default=1e-2)
    o.add_argument("--iterations", type=int, default=200)
    o.add_argument("--loss", choices=["l1", "l2"], default="l1", help="training loss of the head")
    args = parser.parse_args()
    torch.set_num_threads(1)
    headroom(args) if args.cmd == "headroom" else head_only(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
