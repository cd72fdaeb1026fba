"""Meta weights vs LIIF's area weights under the aware model, at the same budget (issue 30's ablation).

Two arms start from the same committed weights (`init_weights` of configs/aware_mlin.yaml) and train the
same N joint iterations: the same crops (numbered apart from the main run's), batches, rates and seed;
the estimator stays fixed, experts and gate move. They differ in one thing: the `area` arm zeroes the last
layer of every expert's meta-weight head and keeps it at zero, so its decoder mixes the four neighbours
by LIIF's areas exactly (the correction is added to log-areas, decoder.py), while the `meta` arm keeps
and trains its head. A full re-run of the model from its first start (9100 iterations, ~5.5 h on one
core) with area weights is beyond this machine; this is the ablation at a fine-tuning budget, and it
favours the meta arm (the rest of the network co-trained with the head for 9100 iterations; the area arm
has N iterations to re-adapt). The zero-shot swap (0 iterations) is the area arm's first monitor line.

    python scripts/meta_ablation_aware.py --arm area --its 500 --out runs/ablation-aware/area
    python -m mlin_qgis export-aware --weights runs/ablation-aware/area/weights.fp16.pth --out runs/export/abl-area
Resumable: run the same command again after a stop (OUT/checkpoint.pth, written every 50 iterations)."""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from mlin_qgis.ml.aware_stages import cosine_decay
from mlin_qgis.ml.data import CropSource, training_images
from mlin_qgis.ml.monitoring import aware_monitor, monitor_crops
from mlin_qgis.ml.train_aware import AwareTrainConfig, build, save_weights, step_loss

log = logging.getLogger("meta_ablation_aware")
HEAD_LAST = ("decoder__meta__head__2__weight", "decoder__meta__head__2__bias")
CROP_OFFSET = 50_000  # crop numbers far past the main run's (9100 iterations x 8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arm", required=True, choices=["meta", "area"])
    ap.add_argument("--its", type=int, default=500)
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default="configs/aware_mlin.yaml")
    ap.add_argument("--lr-experts", type=float, default=2e-5)
    ap.add_argument("--lr-gate", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(a.threads)
    cfg = AwareTrainConfig.from_yaml(a.config)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = build(cfg)
    if a.arm == "area":
        with torch.no_grad():
            for key in HEAD_LAST:
                model.experts[key].zero_()
                model.experts[key].register_hook(torch.zeros_like)  # no gradient: Adam leaves it at zero
    opt = torch.optim.Adam([{"params": list(model.experts.parameters()), "lr": a.lr_experts},
                            {"params": list(model.gate.parameters()), "lr": a.lr_gate}])
    for p in model.estimator.parameters():
        p.requires_grad_(False)
    base = [a.lr_experts, a.lr_gate]
    ckpt, start = out / "checkpoint.pth", 0
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["iteration"])
        log.info("resuming at %d", start)
    source = CropSource(training_images(cfg.data_root, cfg.split, cfg.split_file), cfg.sampler, cfg.seed, cfg.degradation)
    dev = monitor_crops(cfg.data_root, cfg.dev_split, cfg.split_file, cfg.monitor_images)
    model.train()
    t0, running = time.time(), {}
    with (out / "monitor.jsonl").open("a") as mon:
        if start == 0:
            mon.write(json.dumps({"iteration": 0, "dev": aware_monitor(model, dev, cfg.monitor_scales, torch.device("cpu"))}) + "\n")
        for it in range(start, a.its):
            factor = (it + 1) / a.warmup if it < a.warmup else cosine_decay((it - a.warmup) / max(1, a.its - a.warmup))
            for group, rate in zip(opt.param_groups, base):
                group["lr"] = rate * factor
            losses = step_loss(model, source, cfg, CROP_OFFSET + it, cfg.batch_size, torch.device("cpu"))
            opt.zero_grad(set_to_none=True)
            losses["sr"].backward()  # the estimator is fixed: its loss term would do nothing
            opt.step()
            running = {k: v.item() if k not in running else 0.9 * running[k] + 0.1 * v.item() for k, v in losses.items()}
            done = it + 1
            if done % 50 == 0 or done == a.its:
                torch.save({"state_dict": model.state_dict(), "optimizer": opt.state_dict(), "iteration": done},
                           ckpt.with_suffix(".tmp"))
                ckpt.with_suffix(".tmp").replace(ckpt)
                entry = {"iteration": done, "sr": round(running["sr"], 5),
                         "s_per_it": round((time.time() - t0) / (done - start), 2)}
                if done % 100 == 0 or done == a.its:
                    entry["dev"] = aware_monitor(model, dev, cfg.monitor_scales, torch.device("cpu"))
                mon.write(json.dumps(entry) + "\n")
                mon.flush()
                log.info("%s %s", a.arm, json.dumps(entry))
    if a.arm == "area":
        assert all(float(model.experts[k].detach().abs().max()) == 0.0 for k in HEAD_LAST), "the area arm's head moved"
    save_weights(model, out / "weights.fp16.pth", a.its, time.time() - t0, cfg)


if __name__ == "__main__":
    main()
