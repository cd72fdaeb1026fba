"""Experiment (chunk 5): the estimator and gate trained end to end on the SR loss, with the code read the way
a run reads it: from the whole raster, while the network super-resolves one tile of it.

Every step so far trained the estimator on the crop it coded (48-96 LR px) and the gate on those crop
codes; a run codes the whole raster (core/aware.py) and then runs each tile with that code. Here each
sample is a whole 256 px training image at an integer scale (x2 twice as often as x3 and x4; LR 128, 85
or 64 px) degraded by the training mix: the estimator reads all of its LR, and the network (experts
frozen) predicts a random 48 px LR window of it, so the SR loss tells estimator and gate which code helps
on whole images. The estimator keeps its supervised term (--bce, on the true scores) as an anchor.

    python scripts/experiments/raster_codes_e2e.py --its 500 --out runs/c5/e2e
Writes OUT/weights.fp16.pth (train-aware format: scripts/dev_check.py and export-aware read it) and
OUT/monitor.jsonl; resumable (OUT/checkpoint.pth every 50 iterations)."""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mlin_qgis.ml.aware_stages import cosine_decay
from mlin_qgis.ml.data import sample_queries, training_images
from mlin_qgis.ml.degradation import draw, make_lr
from mlin_qgis.ml.estimator import degradation_targets
from mlin_qgis.ml.images import load_image
from mlin_qgis.ml.train_aware import AwareTrainConfig, build, save_weights

log = logging.getLogger("raster_codes_e2e")
SCALES = (2, 2, 3, 4)
WINDOW = 48


def raster_sample(images: list, paths: list, rng: np.random.Generator, cfg: AwareTrainConfig):
    """(whole LR, LR window, HR window uint8, true scores) of one random image, scale and chain."""
    i = int(rng.integers(len(paths)))
    if images[i] is None:
        images[i] = load_image(paths[i])
    img = images[i]
    s = int(rng.choice(SCALES))
    side = min(256, min(img.shape[:2]) // s * s)
    y, x = int(rng.integers(img.shape[0] - side + 1)), int(rng.integers(img.shape[1] - side + 1))
    hr = img[y: y + side, x: x + side].transpose(2, 0, 1)
    if rng.random() < 0.5:
        hr = hr[:, :, ::-1]
    if rng.random() < 0.5:
        hr = hr.transpose(0, 2, 1)
    hr = torch.from_numpy(np.ascontiguousarray(hr))
    n = side // s
    chain = draw(rng, float(s), cfg.degradation)
    lr = make_lr(hr.float().div(255).unsqueeze(0), (n, n), chain)[0]
    oy, ox = int(rng.integers(n - WINDOW + 1)), int(rng.integers(n - WINDOW + 1))
    return (lr, lr[:, oy: oy + WINDOW, ox: ox + WINDOW], hr[:, oy * s: (oy + WINDOW) * s, ox * s: (ox + WINDOW) * s],
            degradation_targets(chain, float(s)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--its", type=int, default=500)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr-estimator", type=float, default=3e-4)
    ap.add_argument("--lr-gate", type=float, default=3e-3)
    ap.add_argument("--bce", type=float, default=0.05, help="weight of the estimator's supervised term")
    ap.add_argument("--seed", type=int, default=505)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = AwareTrainConfig.from_yaml("configs/aware_mlin.yaml")
    model = build(cfg)
    for p in model.experts.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam([{"params": list(model.estimator.parameters()), "lr": a.lr_estimator},
                            {"params": list(model.gate.parameters()), "lr": a.lr_gate}])
    base = [a.lr_estimator, a.lr_gate]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt, start = out / "checkpoint.pth", 0
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["iteration"])
    paths = training_images(cfg.data_root, cfg.split, cfg.split_file)
    images = [None] * len(paths)
    model.train()
    t0, running = time.time(), {}
    with (out / "monitor.jsonl").open("a") as mon:
        for it in range(start, a.its):
            for g, rate in zip(opt.param_groups, base):
                g["lr"] = rate * (min(1.0, (it + 1) / 25) * cosine_decay(it / a.its))
            rng = np.random.default_rng([a.seed, it])
            samples = [raster_sample(images, paths, rng, cfg) for _ in range(a.batch)]
            logits = torch.cat([model.code_logits(smp[0][None]) for smp in samples])
            targets = torch.stack([smp[3] for smp in samples])
            pi = model.mixing(torch.sigmoid(logits))
            coord, cell, hr = sample_queries([smp[2] for smp in samples], rng, cfg.sampler.sample_q, WINDOW)
            pred = model.predict(torch.stack([smp[1] for smp in samples]), coord, cell, pi)
            sr = F.mse_loss(pred, (hr - model.input_mean) / model.input_std)
            est = F.binary_cross_entropy_with_logits(logits, targets)
            loss = sr + a.bce * est
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running = {k: v if k not in running else 0.9 * running[k] + 0.1 * v
                       for k, v in {"sr": sr.item(), "estimator": est.item()}.items()}
            done = it + 1
            if done % 25 == 0 or done == a.its:
                torch.save({"state_dict": model.state_dict(), "optimizer": opt.state_dict(), "iteration": done},
                           ckpt.with_suffix(".tmp"))
                ckpt.with_suffix(".tmp").replace(ckpt)
                entry = {"iteration": done, **{k: round(v, 5) for k, v in running.items()},
                         "s_per_it": round((time.time() - t0) / (done - start), 2),
                         "gate_weight_alias": [round(float(v), 3) for v in model.gate.weight[:, 0].detach()],
                         "gate_bias": [round(float(v), 3) for v in model.gate.bias.detach()]}
                mon.write(json.dumps(entry) + "\n")
                mon.flush()
                log.info("%s", json.dumps(entry))
    save_weights(model, out / "weights.fp16.pth", a.its, time.time() - t0, cfg)


if __name__ == "__main__":
    main()
