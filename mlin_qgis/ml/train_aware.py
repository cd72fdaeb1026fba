"""Training the degradation-aware MLIN (mixture.py) in chunks that survive the end of a session.

`python -m mlin_qgis train-aware --config configs/aware_mlin.yaml [--resume] [--minutes 85]`

- Resumable exactly: every batch is a function of (seed, iteration) only (crop k is seeded by
  (seed, k), the query pick by (seed, 1, iteration)), and the checkpoint holds the model, the
  optimizer, the iteration (the schedule is a function of it) and torch's RNG state. N iterations in
  one go equal N/2, a stop, `--resume` and N/2 more, bit for bit on CPU (tested).
- The checkpoint is written every `checkpoint_minutes` of wall time and every `checkpoint_every`
  iterations, atomically (write then rename), under `run_dir`.
- `--minutes M` stops cleanly (checkpoint written) after M minutes: a chunk of a longer run.
- A monitor (`monitor.jsonl`) records the mean PSNR of fixed centre crops of dev (carved out of
  train, where choices are made) and val (reported, never tuned on) images every `monitor_every`
  iterations, under clean, aliased and JPEG LR at x2 and x4, and the estimator's error.
- On CUDA the same config runs with a larger batch (`cuda_batch_size`), bf16 autocast and the data
  on the device."""
from __future__ import annotations

import argparse
import json
import logging
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import ConfigError
from .aware_stages import AnchoredStage, EstimatorFinish, cosine_decay, finish_rate, load_teacher, teacher_term
from .config_files import YamlConfig, config_fields
from .data import CropSource, SamplerConfig, sample_queries, training_images
from .degradation import DegradationConfig
from .estimator import CODE_NAMES, TOP_FRACTION, degradation_targets
from .mixture import DegradationAwareSR, MixtureConfig
from .model import ImplicitSR
from .monitoring import aware_monitor, monitor_crops
from .train import pick_device

log = logging.getLogger(__name__)


@dataclass
class AwareTrainConfig(YamlConfig):
    config_kind: ClassVar[str] = "train-aware"
    data_root: str = "../shared/data/ucmerced/train"
    split_file: Optional[str] = "configs/splits/ucmerced_dev.json"
    split: Optional[str] = "fit"
    dev_split: Optional[str] = "dev"
    val_root: Optional[str] = "../shared/data/ucmerced/val"
    monitor_images: int = 8  # per set (dev, val): fixed centre 128x128 crops
    monitor_scales: List[float] = field(default_factory=lambda: [2.0, 4.0])
    # Where the experts come from on a fresh start: model folders (ONNX pairs; '@variant' allowed).
    experts: Dict[str, str] = field(default_factory=lambda: {
        "clean": "models/mlin-edsr-ucmerced", "robust": "models/mlin-robust-ucmerced",
        "sharp": "models/mlin-robust-ucmerced@sharp"})
    # Or continue from committed weights of an earlier chunk (a new machine without runs/).
    init_weights: Optional[str] = None
    estimator_width: int = 32
    estimator_pooling: List[float] = field(default_factory=lambda: [TOP_FRACTION] * len(CODE_NAMES))
    # dilations of the estimator's context blocks (estimator.ContextBlock); new blocks start at identity
    estimator_context: List[int] = field(default_factory=list)
    iterations: int = 6000
    batch_size: int = 8
    cuda_batch_size: int = 32
    lr_experts: float = 2e-5
    lr_estimator: float = 1e-3
    lr_gate: float = 1e-3
    estimator_loss_weight: float = 0.05
    # The first iterations train the estimator alone (a bigger batch, no SR pass), so that the gate
    # routes crops to meaningful experts before the experts start to move.
    estimator_warmup: int = 300
    estimator_batch_size: int = 32
    # Later stretches [start, end) of estimator-only training, e.g. after the estimator's design changed
    # between chunks; their crops come from `estimator_sampler` when it is set (else `sampler`).
    estimator_only: List[List[int]] = field(default_factory=list)
    estimator_sampler: Optional[SamplerConfig] = None
    # Optional stage after `iterations`: iterations .. iterations + estimator_finish.iterations.
    estimator_finish: Optional[EstimatorFinish] = None
    # Optional stage after that: joint training with the official LIIF as a teacher on clean crops.
    anchored: Optional[AnchoredStage] = None
    # Later anchored stages, in order (chunk 5 on): each its own length, rates and teacher weight.
    more_anchored: List[AnchoredStage] = field(default_factory=list)
    warmup: int = 50
    sampler: SamplerConfig = field(default_factory=lambda: SamplerConfig(scale_min=1.0, scale_max=5.0))
    degradation: DegradationConfig = field(default_factory=lambda: DegradationConfig(
        p_clean=0.35, downsample={"bicubic": 0.4, "bicubic-aliased": 0.4, "area": 0.1, "nearest": 0.1},
        p_blur=0.15, blur_sigma=(0.1, 0.5), p_noise=0.15, noise_sigma=(1.0, 6.0), p_jpeg=0.35,
        jpeg_quality=(40, 95)))
    seed: int = 30
    threads: int = 0
    device: str = "auto"
    amp: Optional[bool] = None  # bf16 autocast; None: on CUDA only (True on CPU exercises the GPU path)
    run_dir: str = "runs/aware-mlin"
    checkpoint_every: int = 100
    checkpoint_minutes: float = 8.0
    monitor_every: int = 100
    log_every: int = 10

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "AwareTrainConfig":
        data = dict(data)
        if data.get("estimator_finish") is not None:
            data["estimator_finish"] = EstimatorFinish.from_dict(data["estimator_finish"])
        if data.get("anchored") is not None:
            data["anchored"] = AnchoredStage.from_dict(data["anchored"])
        data["more_anchored"] = [AnchoredStage.from_dict(d) for d in data.get("more_anchored") or []]
        cfg = cls(**config_fields(cls, data, cls.config_kind))
        if cfg.more_anchored and cfg.anchored is None:
            raise ConfigError("more_anchored follows the anchored stage: give `anchored` too")
        for stage in cfg.anchored_stages():
            if stage.teacher_expert is not None and stage.teacher_expert not in cfg.experts:
                raise ConfigError(f"teacher_expert {stage.teacher_expert!r} is not one of the experts "
                                  f"({', '.join(cfg.experts)})")
        return cfg

    def finish_end(self) -> int:
        """Where the finishing stage ends (= `iterations` without one) and the anchored stage starts."""
        return self.iterations + (self.estimator_finish.iterations if self.estimator_finish else 0)

    def anchored_stages(self) -> List[AnchoredStage]:
        return ([self.anchored] if self.anchored else []) + list(self.more_anchored)

    def anchored_at(self, it: int) -> Optional[Tuple[AnchoredStage, int]]:
        """The anchored stage iteration `it` belongs to and its step in it (0 = its first), if any."""
        start = self.finish_end()
        for stage in self.anchored_stages():
            if start <= it < start + stage.iterations:
                return stage, it - start
            start += stage.iterations
        return None

    def stage_ends(self) -> List[int]:
        """The iteration at which each anchored stage ends (the monitor records each)."""
        ends, at = [], self.finish_end()
        for stage in self.anchored_stages():
            at += stage.iterations
            ends.append(at)
        return ends

    def total_iterations(self) -> int:
        return self.finish_end() + sum(stage.iterations for stage in self.anchored_stages())


# ---- model, optimizer, schedule ---------------------------------------------------------------------

def build(cfg: AwareTrainConfig) -> DegradationAwareSR:
    """The mixture at its starting point: committed weights of an earlier chunk, or the experts."""
    model = DegradationAwareSR(MixtureConfig(experts=list(cfg.experts), estimator_width=cfg.estimator_width,
                                             estimator_pooling=list(cfg.estimator_pooling),
                                             estimator_context=list(cfg.estimator_context)))
    if cfg.init_weights:
        state = torch.load(cfg.init_weights, map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict({k: v.float() for k, v in state["state_dict"].items()},
                                                    strict=False)
        # the template is structure only, never trained; new context blocks start at identity
        missing = [k for k in missing if not k.startswith(("template.", "estimator.context."))]
        if missing or unexpected:
            raise ConfigError(f"{cfg.init_weights} does not fit this model (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}); pass weights written by `train-aware`")
        return model
    from .onnx_import import model_from_onnx

    singles = []
    for name, spec in cfg.experts.items():
        folder, _, variant = spec.partition("@")
        singles.append(model_from_onnx(folder, variant))
    model.load_experts(singles)
    return model


def optimizer_for(model: DegradationAwareSR, cfg: AwareTrainConfig) -> torch.optim.Optimizer:
    groups = [
        {"params": list(model.experts.parameters()), "lr": cfg.lr_experts, "base_lr": cfg.lr_experts},
        {"params": list(model.estimator.parameters()), "lr": cfg.lr_estimator, "base_lr": cfg.lr_estimator},
        {"params": list(model.gate.parameters()), "lr": cfg.lr_gate, "base_lr": cfg.lr_gate},
    ]
    return torch.optim.Adam(groups)


def estimator_alone(it: int, cfg: AwareTrainConfig) -> bool:
    """Whether iteration `it` trains the estimator alone (the warm-up or a later `estimator_only` stretch)."""
    return (it < cfg.estimator_warmup or any(start <= it < end for start, end in cfg.estimator_only)
            or cfg.iterations <= it < cfg.finish_end())


def lr_factor(it: int, cfg: AwareTrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5 % of the base rate over `iterations`."""
    if estimator_alone(it, cfg):
        return 1.0
    it -= cfg.estimator_warmup
    if it < cfg.warmup:
        return (it + 1) / cfg.warmup
    return cosine_decay((it - cfg.warmup) / max(1, cfg.iterations - cfg.estimator_warmup - cfg.warmup))


# ---- one step ---------------------------------------------------------------------------------------------

def estimator_loss(model: DegradationAwareSR, source: CropSource, batch: int, first_crop: int,
                   device: torch.device) -> Dict[str, torch.Tensor]:
    """Estimator-only loss on crops first_crop .. first_crop + batch - 1 (numbered apart from the main run's)."""
    crops = [source.crop_with_chain(first_crop + k) for k in range(batch)]
    lr = torch.stack([c[0] for c in crops]).to(device)
    targets = torch.stack([degradation_targets(c[2], c[3]) for c in crops]).to(device)
    est = F.binary_cross_entropy_with_logits(model.code_logits(lr).float(), targets)
    return {"loss": est, "estimator": est}


def autocast_for(cfg: AwareTrainConfig, device: torch.device) -> Any:
    use = cfg.amp if cfg.amp is not None else device.type == "cuda"
    return torch.autocast(device.type, dtype=torch.bfloat16) if use else nullcontext()


def step_loss(model: DegradationAwareSR, source: CropSource, cfg: AwareTrainConfig, it: int, batch: int,
              device: torch.device, teacher: Optional[ImplicitSR] = None,
              stage: Optional[AnchoredStage] = None) -> Dict[str, torch.Tensor]:
    """Loss of iteration `it` (a function of the seed and `it` only); with `teacher`, the anchored `stage`'s."""
    crops = [source.crop_with_chain(it * batch + k) for k in range(batch)]
    lr = torch.stack([c[0] for c in crops]).to(device)
    targets = torch.stack([degradation_targets(c[2], c[3]) for c in crops]).to(device)
    rng = np.random.default_rng([cfg.seed, 1, it])
    coord, cell, hr = sample_queries([c[1] for c in crops], rng, cfg.sampler.sample_q, cfg.sampler.lr_size)
    with autocast_for(cfg, device):
        logits = model.code_logits(lr)
        pi = model.mixing(torch.sigmoid(logits))
        pred = model.predict(lr, coord.to(device), cell.to(device), pi)
    goal = (hr.to(device) - model.input_mean) / model.input_std
    sr = F.mse_loss(pred.float(), goal)
    est = F.binary_cross_entropy_with_logits(logits.float(), targets)
    losses = {"loss": sr + cfg.estimator_loss_weight * est, "sr": sr, "estimator": est}
    if teacher is not None and stage is not None and stage.teacher_weight > 0:
        clean = targets.amax(dim=1) < stage.clean_below
        term = pred.new_zeros(()).float()
        if bool(clean.any()):
            with torch.no_grad(), autocast_for(cfg, device):
                taught = teacher(lr[clean], coord.to(device)[clean], cell.to(device)[clean])
            student = pred[clean]
            if stage.teacher_expert is not None:  # that expert alone answers the teacher
                alone = F.one_hot(torch.tensor(list(cfg.experts).index(stage.teacher_expert)), len(cfg.experts))
                with autocast_for(cfg, device):
                    student = model.predict(lr[clean], coord.to(device)[clean], cell.to(device)[clean],
                                            alone.float().to(device).expand(len(student), -1))
            term = teacher_term(student, taught, pred.shape[0])
        losses["loss"] = losses["loss"] + stage.teacher_weight * term
        losses["teacher"] = term
    return losses


# ---- monitor ----------------------------------------------------------------------------------------------

# ---- checkpoints ---------------------------------------------------------------------------------------

def save_checkpoint(path: Path, model: DegradationAwareSR, opt: torch.optim.Optimizer, it: int, seconds: float,
                    cfg: AwareTrainConfig) -> None:
    payload = {"kind": "mlin-qgis-aware", "config": json.loads(json.dumps(asdict(cfg))),
               "state_dict": model.state_dict(), "optimizer": opt.state_dict(), "iteration": it,
               "seconds": seconds, "torch_rng": torch.get_rng_state()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def save_weights(model: DegradationAwareSR, path: Path, it: int, seconds: float, cfg: AwareTrainConfig) -> None:
    """Model weights only, float16 (what a chunk commits; `init_weights` reads it back)."""
    payload = {"kind": "mlin-qgis-aware-weights", "iteration": it, "seconds": seconds,
               "config": json.loads(json.dumps(asdict(cfg))),
               "state_dict": {k: v.detach().cpu().half() if v.is_floating_point() else v
                              for k, v in model.state_dict().items() if not k.startswith("template.")}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


# ---- the loop ---------------------------------------------------------------------------------------------

def end_of(cfg: AwareTrainConfig, stop_at: Optional[int]) -> int:
    total = cfg.total_iterations()
    return min(total, stop_at if stop_at is not None else total)


def train(cfg: AwareTrainConfig, resume: bool = False, minutes: Optional[float] = None,
          stop_at: Optional[int] = None) -> Path:
    """Train (or continue) until `iterations`, `stop_at` or `minutes`; returns the checkpoint path."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    batch = cfg.cuda_batch_size if device.type == "cuda" else cfg.batch_size
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    ckpt = run / "checkpoint.pth"
    torch.manual_seed(cfg.seed)
    model = build(cfg)
    opt = optimizer_for(model, cfg)
    start, spent = 0, 0.0
    if ckpt.is_file():
        if not resume:
            raise ConfigError(f"{ckpt} exists: pass --resume to continue it, or choose another --run-dir")
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        start, spent = int(state["iteration"]), float(state["seconds"])
        log.info("resuming %s at iteration %d (%.2f h trained)", ckpt, start, spent / 3600)
    elif cfg.init_weights:  # a new machine: the committed chunk's weights, its iteration; a fresh optimizer
        record = torch.load(cfg.init_weights, map_location="cpu", weights_only=True)
        start, spent = int(record.get("iteration", 0)), float(record.get("seconds", 0.0))
        log.info("continuing from %s at iteration %d with a fresh optimizer", cfg.init_weights, start)
    model.to(device).train()
    estimator_first = next(model.estimator.parameters())
    (run / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    paths = training_images(cfg.data_root, cfg.split, cfg.split_file if cfg.split else None)
    source = CropSource(paths, cfg.sampler, cfg.seed, cfg.degradation)
    estimator_source = (CropSource(paths, cfg.estimator_sampler, cfg.seed, cfg.degradation)
                        if cfg.estimator_sampler is not None else source)
    finish = cfg.estimator_finish
    finish_sources = ([CropSource(paths, s, cfg.seed + 1 + i, cfg.degradation) for i, s in enumerate(finish.samplers)]
                      if finish is not None else [])
    teacher = None
    taught = {st.teacher for st in cfg.anchored_stages() if st.teacher_weight > 0}
    if len(taught) > 1:
        raise ConfigError(f"the anchored stages name different teachers ({sorted(taught)}); use one")
    if taught and end_of(cfg, stop_at) > cfg.finish_end():
        teacher = load_teacher(taught.pop()).to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    dev = monitor_crops(cfg.data_root, cfg.dev_split, cfg.split_file, cfg.monitor_images) if cfg.dev_split else []
    val = monitor_crops(cfg.val_root, None, None, cfg.monitor_images)
    total = cfg.total_iterations()
    end = end_of(cfg, stop_at)
    t0 = time.time()
    last_save = t0
    deadline = None if minutes is None else t0 + 60.0 * minutes
    it = start
    running: Dict[str, float] = {}
    with (run / "monitor.jsonl").open("a") as mon:
        def record(done: int) -> None:
            entry: Dict[str, Any] = {"iteration": done, "hours": round((spent + time.time() - t0) / 3600, 3),
                                     **{k: round(v, 5) for k, v in running.items()}}
            if dev:
                entry["dev"] = aware_monitor(model, dev, cfg.monitor_scales, device)
            if val:
                entry["val"] = aware_monitor(model, val, cfg.monitor_scales, device)
            mon.write(json.dumps(entry) + "\n")
            mon.flush()
            log.info("%s", json.dumps(entry))

        if start == 0 and (dev or val):
            record(0)
        while it < end:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * lr_factor(it, cfg)
            current = cfg.anchored_at(it)
            if current is not None:  # an anchored stage; the optimizer's groups: experts, estimator, gate
                stage, step = current
                for group, base in zip(opt.param_groups, (stage.lr_experts, stage.lr_estimator, stage.lr_gate)):
                    group["lr"] = base * stage.rate_factor(step)
                losses = step_loss(model, source, cfg, it, batch, device, teacher, stage)
            elif it >= cfg.iterations and finish is not None:  # the finishing stage
                for group in opt.param_groups:
                    group["lr"] = (finish_rate(finish, it - cfg.iterations) if group["params"][0] is estimator_first
                                   else 0.0)
                losses = estimator_loss(model, finish_sources[(it - cfg.iterations) % len(finish_sources)],
                                        finish.batch_size, 2 * 10**9 + it * finish.batch_size, device)
            elif estimator_alone(it, cfg):
                losses = estimator_loss(model, estimator_source if it >= cfg.estimator_warmup else source,
                                        cfg.estimator_batch_size, 10**9 + it * cfg.estimator_batch_size, device)
            else:
                losses = step_loss(model, source, cfg, it, batch, device)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            for k, v in losses.items():
                running[k] = v.item() if k not in running else 0.9 * running[k] + 0.1 * v.item()
            it += 1
            if it % cfg.log_every == 0:
                log.info("it %d  sr %.5f  estimator %.4f  %.2f s/it", it, running.get("sr", float("nan")),
                         running["estimator"],
                         (time.time() - t0) / max(1, it - start))
            now = time.time()
            if it % cfg.checkpoint_every == 0 or now - last_save > 60.0 * cfg.checkpoint_minutes or it == end:
                save_checkpoint(ckpt, model, opt, it, spent + now - t0, cfg)
                last_save = now
            if (it % cfg.monitor_every == 0 or it in (cfg.iterations, cfg.finish_end(), *cfg.stage_ends(), total)) and (dev or val):
                record(it)
            if deadline is not None and time.time() > deadline:
                log.info("chunk time is up at iteration %d", it)
                break
    if not ckpt.is_file() or it != start:
        save_checkpoint(ckpt, model, opt, it, spent + time.time() - t0, cfg)
    save_weights(model, run / "weights.fp16.pth", it, spent + time.time() - t0, cfg)
    return ckpt


def smoke_config(cfg: AwareTrainConfig) -> AwareTrainConfig:
    """The same code path at toy sizes (the test suite runs it on CPU with bf16 autocast on)."""
    cfg.iterations, cfg.estimator_warmup, cfg.warmup = 4, 1, 1
    cfg.batch_size = cfg.cuda_batch_size = 2
    cfg.estimator_batch_size = 4
    cfg.sampler = SamplerConfig(lr_size=16, scale_min=1.0, scale_max=3.0, sample_q=64)
    cfg.monitor_images, cfg.checkpoint_every = 1, 2
    cfg.monitor_every = 4
    cfg.amp = True
    return cfg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML file with AwareTrainConfig fields")
    parser.add_argument("--resume", action="store_true", help="continue the run folder's checkpoint")
    parser.add_argument("--minutes", type=float, default=None, help="stop (checkpoint written) after this long")
    parser.add_argument("--iterations", type=int, default=None, help="override the config's iterations")
    parser.add_argument("--stop-at", type=int, default=None, help="stop at this iteration (the schedule keeps "
                        "the config's length)")
    parser.add_argument("--run-dir", default=None, help="override the config's run folder")
    parser.add_argument("--data-root", default=None, help="override the config's training image folder")
    parser.add_argument("--split", default=None, help="override the config's split of the split file ('none': "
                        "every image under --data-root; the dev monitor is then off)")
    parser.add_argument("--val-root", default=None, help="override the config's val image folder")
    parser.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    parser.add_argument("--init-weights", default=None, help="start from committed chunk weights (fp16 .pth)")
    parser.add_argument("--threads", type=int, default=None, help="override the config's torch threads (e.g. 1 "
                        "while the other core measures)")
    parser.add_argument("--teacher", default=None, help="override the anchored stage's teacher checkpoint (e.g. a "
                        "copy of the official LIIF on a machine without ../shared)")
    parser.add_argument("--smoke", action="store_true", help="4 toy iterations with bf16 autocast, any device: "
                        "checks the GPU path end to end")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = AwareTrainConfig.from_yaml(args.config)
    for name in ("iterations", "run_dir", "device", "init_weights", "data_root", "val_root", "threads"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    if args.teacher is not None:
        for stage in cfg.anchored_stages():
            stage.teacher = args.teacher
    if args.split is not None:
        cfg.split = None if args.split == "none" else args.split
        if cfg.split is None:
            cfg.split_file = cfg.dev_split = None
    if args.smoke:
        cfg = smoke_config(cfg)
    path = train(cfg, resume=args.resume, minutes=args.minutes, stop_at=args.stop_at)
    log.info("checkpoint: %s", path)
    return 0
