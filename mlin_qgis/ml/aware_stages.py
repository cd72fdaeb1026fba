"""The stages of the aware model's training plan after its joint iterations, and their rates.

The plan, by iteration:  [0, iterations)  joint training (with the estimator's warm-up and any
`estimator_only` stretches inside it);  then `estimator_finish` (the estimator alone on run-sized crops);
then `anchored` (joint training again, with the official LIIF as a teacher on clean crops), then any
`more_anchored` stages (the same kind, each with its own length, rates and teacher weight). Each stage is
optional and appended in that order, so a chunk that adds a stage leaves the earlier iterations, and
so exact resume, untouched."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from ..core.errors import ConfigError
from .config_files import config_fields
from .data import SamplerConfig
from .model import ImplicitSR, load_model


def cosine_decay(t: float) -> float:
    """1 at t = 0, cosine down to 5 % at t >= 1: every stage's rate shape."""
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, t))))


@dataclass
class EstimatorFinish:
    """A last stage after the joint iterations: the estimator alone, on crops as large as what a run
    reads, with a cosine-decayed rate. Why: a run pools the code over whole rasters, the joint training
    over 48 px crops. On dev (chunk 3) refits of the iteration-4000 estimator on large crops raised aliased
    x2 by +0.08 ± 0.05 and +0.23 ± 0.14 dB (two refits; 96 px crops alone: +0.44, but clean x4 -0.25)."""

    iterations: int = 1500
    batch_size: int = 16
    lr: float = 1e-3
    # Cycled by iteration, e.g. two 96 px crops (x1-2.67: a 256 px image holds no larger ones) to one
    # 48 px crop (x2.67-5), so every scale a user picks is seen at the largest size it fits.
    samplers: List[SamplerConfig] = field(default_factory=lambda: [
        SamplerConfig(lr_size=96, scale_min=1.0, scale_max=2.67, sample_q=16),
        SamplerConfig(lr_size=96, scale_min=1.0, scale_max=2.67, sample_q=16),
        SamplerConfig(lr_size=48, scale_min=2.67, scale_max=5.0, sample_q=16)])

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "EstimatorFinish":
        data = config_fields(cls, data, "estimator_finish")
        if "samplers" in data:
            data["samplers"] = [SamplerConfig(**d) for d in data["samplers"]]
        return cls(**data)


@dataclass
class AnchoredStage:
    """Joint training after the finishing stage, with the official LIIF (trained on DIV2K's natural photos)
    as a second target on clean crops: loss = MSE(pred, HR) + teacher_weight * MSE(pred, LIIF(LR)) there.

    Why: after three chunks on UC Merced alone the clean path was 0.3-0.4 dB below LIIF on Set14 and
    0.7-1.7 dB on drone orthophoto tiles (0.10.0), while on UC Merced's own clean val it was level with LIIF
    (-0.05 dB). No other training data may be used, so the clean crops anchor the function to LIIF's
    where the two agree anyway. Degraded crops keep the HR loss alone (LIIF is no guide there). Measured in
    chunk 4 at weight 1: a weak pull (the term stayed ~1/60 of the HR loss; a control without it was level)."""

    iterations: int = 1600
    lr_experts: float = 1e-5
    lr_gate: float = 1e-4
    # 0: the finishing stage fitted the estimator on run-sized crops; 48 px crops would pull it back
    lr_estimator: float = 0.0
    warmup: int = 50
    # a checkpoint (the official LIIF's, as shared/README describes it) or one of our exported model folders
    teacher: str = "../shared/weights/edsr-baseline-liif.pth"
    teacher_weight: float = 1.0
    clean_below: float = 0.05  # a crop is clean when each of its true degradation scores is below this
    # None: the teacher's term reads the mixed network (chunk 4). An expert's name: it reads that expert
    # alone, so only that expert gets the teacher's gradient (chunk 5: through their small share of the
    # clean crops' mix, a strong teacher moved every expert and cost aliased input 0.6 dB in 100 iterations).
    teacher_expert: Optional[str] = None

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "AnchoredStage":
        return cls(**config_fields(cls, data, "anchored"))

    def rate_factor(self, step: int) -> float:
        """Linear warm-up over `warmup` steps, then cosine to 5 % at the stage's end (step 0 = its first)."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        return cosine_decay((step - self.warmup) / max(1, self.iterations - self.warmup))


def finish_rate(finish: EstimatorFinish, step: int) -> float:
    """The estimator's rate in the finishing stage (step 0 = its first): cosine from `lr` to 5 % of it."""
    return finish.lr * cosine_decay(step / max(1, finish.iterations))


def teacher_term(student: torch.Tensor, teacher_pred: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Mean squared distance to the teacher over the clean samples, scaled by their share of the batch
    (each clean sample weighs in as much as in the HR loss). student and teacher_pred (b, N, C): the b clean
    samples' predictions (the mixed network's, or one expert's alone)."""
    per_sample = (student.float() - teacher_pred.float()).pow(2).mean(dim=(1, 2))
    return per_sample.sum() / batch_size


def load_teacher(path: str) -> ImplicitSR:
    """A checkpoint file (the official LIIF's included) or an ONNX model folder of ours."""
    if Path(path).is_dir():
        from .onnx_import import model_from_onnx

        return model_from_onnx(path)
    if not Path(path).is_file():
        raise ConfigError(f"teacher {path} not found: name a checkpoint file or an exported model folder")
    return load_model(path)
