"""Training: decoder (+ meta-weight network), the encoder frozen or fine-tuned, LIIF protocol, L1 (or L2) loss.

`python -m mlin_qgis train --config FILE.yaml`; the same as `train(TrainConfig(...))` in Python.
`train_encoder: false` (the default; MLIN's paper setting, and `mlin-edsr-ucmerced`'s): only decoder
parameters reach the optimizer, the encoder is frozen (requires_grad False, eval mode) and its features
are cached in a refreshed crop bank (see data.py). `train_encoder: true` fine-tunes the encoder too, at
`lr_encoder`, on fresh crops each iteration: the shipped default (`mlin-aware-ucmerced`) does, because it
measured better on degraded input (+0.23 to +0.36 dB on aliased LR at the same budget; its model card)."""
from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import ConfigError
from .config_files import YamlConfig
from .data import CropSource, FeatureBank, SamplerConfig, sample_queries, training_images
from .decoder import DecoderConfig
from .degradation import DegradationConfig
from .images import list_images
from .model import ImplicitSR, load_model, read_checkpoint, save_model
from .monitoring import centre_crops, crops_psnr

log_ = logging.getLogger(__name__)
LOSSES = ("l1", "l2")


@dataclass
class TrainConfig(YamlConfig):
    data_root: str = "../shared/data/ucmerced/train"
    split: Optional[str] = None
    split_file: Optional[str] = None
    val_root: Optional[str] = "../shared/data/ucmerced/val"
    val_images: int = 12  # a fixed, small val subset tracked during training (full eval: `evaluate`)
    val_scales: List[float] = field(default_factory=lambda: [2.0, 4.0])
    encoder_checkpoint: str = "../shared/weights/edsr-baseline-liif.pth"
    # Start the decoder (and meta network) from an earlier run of ours instead of LIIF's MLP; that
    # run's record is kept as an earlier phase, so the card states the whole budget.
    init_checkpoint: Optional[str] = None
    loss: str = "l1"  # "l1" as in LIIF, or "l2": the squared error that PSNR measures
    weighting: str = "meta"
    meta_hidden: int = 64
    meta_embed: int = 32
    meta_residual: bool = True
    iterations: int = 3000
    batch_size: int = 8
    lr: float = 5e-5  # decoder MLP (starts from LIIF's, so fine-tuning)
    lr_meta: float = 5e-4  # meta-weight network (starts at zero correction)
    warmup: int = 50
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    # Random real-world degradations of the LR crops (None: the clean antialiased bicubic resize).
    degradation: Optional[DegradationConfig] = None
    # False: the natural-photo encoder stays frozen (MLIN's paper). True fine-tunes it too, as the shipped
    # default model does (it pays on degraded input); no feature bank then: every iteration encodes fresh
    # crops with gradients, about 2.3x the cost of a frozen-encoder iteration on CPU.
    train_encoder: bool = False
    lr_encoder: float = 1e-5
    bank_size: int = 1024
    bank_refresh: int = 2  # new crops encoded per iteration
    seed: int = 0
    threads: int = 0  # 0: torch's default
    device: str = "auto"
    run_dir: str = "runs/mlin"
    checkpoint_every: int = 250
    log_every: int = 25
    resume: bool = True

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss '{self.loss}'; choose one of: {', '.join(LOSSES)}")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(cfg: TrainConfig) -> ImplicitSR:
    """Encoder (frozen unless `train_encoder`) + decoder from the LIIF checkpoint; the meta network starts
    at LIIF's weights.

    With `init_checkpoint`, everything starts from that earlier run of ours (same weighting)."""
    if cfg.init_checkpoint:
        model = load_model(cfg.init_checkpoint)
        if model.decoder.cfg.weighting == "meta" and cfg.weighting == "area":
            # The area-weight ablation of a meta run: the same trunk, its meta network dropped.
            model = load_model(cfg.init_checkpoint, weighting="area")
        if model.decoder.cfg.weighting != cfg.weighting:
            raise ConfigError(f"init_checkpoint {cfg.init_checkpoint} has '{model.decoder.cfg.weighting}' weights, "
                             f"the config asks for '{cfg.weighting}'; continue a run with its own weighting")
    else:
        model = load_model(cfg.encoder_checkpoint, weighting=cfg.weighting)
    dec = model.decoder.cfg
    if cfg.weighting == "meta" and (dec.meta_hidden, dec.meta_embed, dec.meta_residual) != (
            cfg.meta_hidden, cfg.meta_embed, cfg.meta_residual):
        if cfg.init_checkpoint:  # a continuation must not silently drop the meta network it trained
            raise ConfigError(f"init_checkpoint {cfg.init_checkpoint} has a meta network with hidden "
                             f"{dec.meta_hidden}, embed {dec.meta_embed}, residual {dec.meta_residual}; set the "
                             "config's meta_hidden/meta_embed/meta_residual to match it")
        fresh = DecoderConfig(**{**asdict(dec), "meta_hidden": cfg.meta_hidden, "meta_embed": cfg.meta_embed,
                                 "meta_residual": cfg.meta_residual})
        imnet = model.decoder.imnet.state_dict()
        model.decoder = type(model.decoder)(fresh)
        model.decoder.imnet.load_state_dict(imnet)
    if not cfg.train_encoder:
        model.freeze_encoder()
    return model


def optimizer_for(model: ImplicitSR, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = [{"params": list(model.decoder.imnet.parameters()), "lr": cfg.lr, "base_lr": cfg.lr}]
    if model.decoder.meta is not None:
        groups.append({"params": list(model.decoder.meta.parameters()), "lr": cfg.lr_meta, "base_lr": cfg.lr_meta})
    if cfg.train_encoder:
        groups.append({"params": list(model.encoder.parameters()), "lr": cfg.lr_encoder, "base_lr": cfg.lr_encoder})
    return torch.optim.Adam(groups)


def lr_factor(it: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5 % of the base rate."""
    if it < cfg.warmup:
        return (it + 1) / cfg.warmup
    t = (it - cfg.warmup) / max(1, cfg.iterations - cfg.warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def training_loss(model: ImplicitSR, feat: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor,
                  target: torch.Tensor, loss: str = "l1") -> torch.Tensor:
    """L1 (or L2) in LIIF's normalised units."""
    proj = model.decoder.project(feat)
    rgb = model.decoder.query(proj, coord, cell)[0]
    goal = (target - model.input_mean) / model.input_std
    return F.mse_loss(rgb, goal) if loss == "l2" else F.l1_loss(rgb, goal)


@torch.no_grad()
def quick_val(model: ImplicitSR, images: List[np.ndarray], scales: List[float],
              degradations: Sequence[str] = ("bicubic",)) -> Dict[str, float]:
    """Mean PSNR on a fixed val subset (centre 192x192 crops): a training monitor, not the report."""
    out: Dict[str, float] = {}
    model.eval()
    for name, s in [(d, s) for d in degradations for s in scales]:
        out[f"x{s:g}" if name == "bicubic" else f"{name}-x{s:g}"] = crops_psnr(model.super_resolve, images, name, s)
    model.train()
    return out


def _val_crops(cfg: TrainConfig) -> List[np.ndarray]:
    if not cfg.val_root or not Path(cfg.val_root).is_dir():
        return []
    return centre_crops(list_images(cfg.val_root), cfg.val_images, 192)


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    """Run (or resume) training; returns the final checkpoint path."""
    from tqdm import tqdm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    ckpt_path = run / "checkpoint.pth"

    model = build_model(cfg).to(device)
    model.train()
    opt = optimizer_for(model, cfg)
    start = 0
    spent_before = 0.0  # wall time of earlier segments of a resumed run
    if cfg.resume and ckpt_path.is_file():
        state = read_checkpoint(ckpt_path)
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["train"]["optimizer"])
        for group, fresh in zip(opt.param_groups, optimizer_for(model, cfg).param_groups):
            group["base_lr"] = fresh["base_lr"]  # the config's rates win over the saved ones
        start = int(state["train"]["iteration"])
        spent_before = float(state["train"].get("seconds", 0.0))
        log_.info("resuming %s at iteration %d", ckpt_path, start)

    earlier = earlier_phases(cfg.init_checkpoint) if cfg.init_checkpoint else []
    paths = training_images(cfg.data_root, cfg.split, cfg.split_file)
    source = CropSource(paths, cfg.sampler, cfg.seed, cfg.degradation)
    t0 = time.time()
    bank: Optional[FeatureBank] = None
    if not cfg.train_encoder:
        bank = FeatureBank(source, lambda lr: model.encode(lr.to(device)).cpu(), cfg.bank_size)
        bank.fill(cfg.bank_size + start * cfg.bank_refresh)
        log_.info("crop bank: %d crops from %d images encoded in %.0f s", cfg.bank_size, len(paths), time.time() - t0)
    val_imgs = _val_crops(cfg)
    with (run / "log.jsonl").open("a") as log:
        def checkpoint(it: int) -> None:
            spent = spent_before + time.time() - t0
            save_model(model, ckpt_path, {"train": {"iteration": it, "optimizer": opt.state_dict(),
                                                     "config": asdict(cfg), "seconds": spent, "phases": earlier},
                                          "card": training_card(cfg, it, spent, device, earlier)})

        bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, disable=not progress,
                   dynamic_ncols=True)
        running = None
        for it in bar:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * lr_factor(it, cfg)
            rng = np.random.default_rng([cfg.seed, 1, it])
            if bank is not None:
                b = bank.batch(rng, cfg.batch_size, cfg.sampler.sample_q, cfg.sampler.lr_size)
                feat = b.feat.to(device)
                coord, cell, target = b.coord, b.cell, b.target
            else:  # the encoder learns too: fresh crops, encoded with gradients
                crops = [source.crop(it * cfg.batch_size + k) for k in range(cfg.batch_size)]
                feat = model.encode(torch.stack([lr for lr, _ in crops]).to(device))
                coord, cell, target = sample_queries([hr for _, hr in crops], rng, cfg.sampler.sample_q,
                                                     cfg.sampler.lr_size)
            loss = training_loss(model, feat, coord.to(device), cell.to(device), target.to(device), cfg.loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if bank is not None:
                bank.refresh(cfg.bank_refresh)
            running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
            bar.set_postfix(loss=f"{running:.4f}")
            done = it + 1
            if done % cfg.log_every == 0 or done == cfg.iterations:
                entry: Dict[str, Any] = {"iteration": done, "loss": running, "seconds": round(time.time() - t0, 1)}
                if val_imgs and (done % cfg.checkpoint_every == 0 or done == cfg.iterations):
                    monitor = ("bicubic", "bicubic-aliased", "jpeg") if cfg.degradation else ("bicubic",)
                    entry["val_psnr"] = quick_val(model, val_imgs, cfg.val_scales, monitor)
                    bar.write(json.dumps(entry))
                log.write(json.dumps(entry) + "\n")
                log.flush()
            if done % cfg.checkpoint_every == 0 or done == cfg.iterations:
                checkpoint(done)
    if start >= cfg.iterations and not ckpt_path.is_file():
        checkpoint(start)
    return ckpt_path


def earlier_phases(init_checkpoint: str) -> List[Dict[str, Any]]:
    """The training record of the run a continuation starts from (its own earlier phases first)."""
    state = read_checkpoint(init_checkpoint)
    record = state.get("train")
    if not record:
        raise ConfigError(f"init_checkpoint {init_checkpoint} has no training record; "
                         "continue from a checkpoint written by `python -m mlin_qgis train`")
    this = {k: record[k] for k in ("iteration", "seconds", "config", "text") if k in record}
    return list(record.get("phases", [])) + [this]


def training_card(cfg: TrainConfig, iteration: int, seconds: float, device: torch.device,
                  earlier: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """What the model card says about how this decoder was trained."""
    hw = torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    scales = cfg.sampler.scale_list or [cfg.sampler.scale_min, cfg.sampler.scale_max]
    steps = [(p["iteration"], p["config"].get("loss", "l1")) for p in earlier or []] + [(iteration, cfg.loss)]
    total_s = seconds + sum(p["seconds"] for p in earlier or [])
    encoder = (f"encoder fine-tuned from {Path(cfg.encoder_checkpoint).name} (DIV2K)" if cfg.train_encoder
               else f"frozen encoder: {Path(cfg.encoder_checkpoint).name}, DIV2K")
    held = "fine-tuned" if cfg.train_encoder else "frozen"
    degradation = (f"; LR degradation: {json.dumps(asdict(cfg.degradation))}" if cfg.degradation
                   else "; LR: antialiased bicubic, 8-bit")
    return {
        "training_data": f"{cfg.data_root} ({encoder}){degradation}",
        "training_budget": (" then ".join(f"{n} iterations ({loss.upper()})" for n, loss in steps)
                            + f", batch {cfg.batch_size}, {cfg.sampler.sample_q} queries/crop, "
                            f"{total_s / 3600:.2f} h on {hw}"),
        "trained_scale_min": float(min(scales)),
        "trained_scale_max": float(max(scales)),
        "method": "mlin" if cfg.weighting == "meta" else "liif",
        "weighting": cfg.weighting,
        "licence": "decoder: trained by mlin-qgis on UC Merced (USGS public domain imagery); "
                   "encoder: BSD-3-Clause (LIIF, Yinbo Chen)",
        "description": (f"MLIN: {held} LIIF EDSR-baseline encoder, decoder and meta-weight network trained on "
                        "remote sensing" if cfg.weighting == "meta" else
                        f"Ablation: {held} LIIF EDSR-baseline encoder, decoder fine-tuned with LIIF area weights"),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML file with TrainConfig fields")
    parser.add_argument("--iterations", type=int, default=None, help="override the config's iterations")
    parser.add_argument("--run-dir", default=None, help="override the config's run folder")
    parser.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = TrainConfig.from_yaml(args.config)
    if args.iterations is not None:
        cfg.iterations = args.iterations
    if args.run_dir:
        cfg.run_dir = args.run_dir
    if args.device:
        cfg.device = args.device
    path = train(cfg, progress=not args.no_progress)
    print(f"checkpoint: {path}")
    return 0
