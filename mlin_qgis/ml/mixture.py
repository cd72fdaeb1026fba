"""Degradation-aware MLIN: one network whose weights follow the input's degradation code.

Every weight of the encoder and decoder (meta-weight network included) is a convex combination of K
expert weights, mixed by a gate that reads the estimator's code:

    pi = softmax(gate(sigmoid(code)))          code = estimator(LR), one per raster
    W  = sum_k pi_k W_k                         for every parameter of the MLIN network

The mixing happens once per raster (per training crop), so a run costs one encoder and one decoder
pass, the same as a single model. The experts start from the three models 0.7.0 routed between
(clean-trained, general robust, sharp-input), which share one lineage (each fine-tuned from the one
before), so their weights interpolate smoothly; at a one-hot gate the network is exactly that expert.
Training then moves the experts, the gate and the estimator together (conditionally parameterised
convolutions, CondConv, applied to the whole network and steered by a supervised code)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.func import functional_call

from ..core.errors import CheckpointError
from .decoder import DecoderConfig
from .estimator import CODE_NAMES, TOP_FRACTION, DegradationEstimator
from .model import ImplicitSR

# Initial gate: expert k's logit = bias_k + sum_j weight_kj * score_j (scores in CODE_NAMES order).
# Clean expert on clean-looking input, sharp expert on aliasing, the general robust one on the rest.
INITIAL_GATE: Dict[str, Tuple[float, Tuple[float, float, float, float]]] = {
    "clean": (3.0, (-8.0, -6.0, -8.0, -10.0)),
    "robust": (0.0, (0.0, 2.0, 4.0, 6.0)),
    "sharp": (-1.0, (8.0, -2.0, -2.0, -2.0)),
}


def _key(name: str) -> str:
    return name.replace(".", "__")


@dataclass
class MixtureConfig:
    experts: List[str] = field(default_factory=lambda: ["clean", "robust", "sharp"])
    estimator_width: int = 32
    # per score, the share of positions whose logits make it (estimator.pool_logits)
    estimator_pooling: List[float] = field(default_factory=lambda: [TOP_FRACTION] * len(CODE_NAMES))
    estimator_context: List[int] = field(default_factory=list)  # dilations of its context blocks
    decoder: Dict[str, Any] = field(default_factory=lambda: asdict(DecoderConfig(weighting="meta")))


class DegradationAwareSR(nn.Module):
    """Estimator + gate + K expert copies of one ImplicitSR's weights."""

    input_mean = ImplicitSR.input_mean
    input_std = ImplicitSR.input_std

    def __init__(self, cfg: Optional[MixtureConfig] = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg if cfg is not None else MixtureConfig()
        self.template = ImplicitSR("edsr-baseline", DecoderConfig(**cfg.decoder))
        self.names = [n for n, p in self.template.named_parameters() if p.requires_grad]
        k = len(cfg.experts)
        self.experts = nn.ParameterDict({
            _key(n): nn.Parameter(p.detach().unsqueeze(0).repeat(k, *([1] * p.dim())))
            for n, p in self.template.named_parameters() if n in self.names})
        for p in self.template.parameters():
            p.requires_grad_(False)  # the template only lends its structure (and the fixed MeanShifts)
        self.estimator = DegradationEstimator(cfg.estimator_width, cfg.estimator_pooling, cfg.estimator_context)
        self.gate = nn.Linear(len(CODE_NAMES), k)
        with torch.no_grad():
            for i, name in enumerate(cfg.experts):
                bias, weight = INITIAL_GATE.get(name, (0.0, (0.0,) * len(CODE_NAMES)))
                self.gate.bias[i] = bias
                self.gate.weight[i] = torch.tensor(weight)

    # ---- building ----------------------------------------------------------------------------------
    def load_experts(self, models: Sequence[ImplicitSR]) -> None:
        """Copy K trained single models into the expert slots (same architecture as the template)."""
        if len(models) != len(self.cfg.experts):
            raise CheckpointError(f"{len(self.cfg.experts)} experts expected, got {len(models)} models")
        with torch.no_grad():
            for k, model in enumerate(models):
                params = dict(model.named_parameters())
                for n in self.names:
                    if n not in params or params[n].shape != self.experts[_key(n)].shape[1:]:
                        raise CheckpointError(f"expert {self.cfg.experts[k]} does not fit the template at {n}")
                    self.experts[_key(n)][k].copy_(params[n])

    # ---- the code and the gate -----------------------------------------------------------------------
    def code_logits(self, lr: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) -> (B, 4) mean logits of the degradation scores."""
        return self.estimator(lr)

    def mixing(self, scores: torch.Tensor) -> torch.Tensor:
        """(B, 4) scores in [0, 1] -> (B, K) expert weights."""
        return torch.softmax(self.gate(scores), dim=-1)

    def mixed_parameters(self, pi: torch.Tensor) -> Dict[str, torch.Tensor]:
        """(K,) expert weights -> one set of network parameters (template names)."""
        stacks = {n: self.experts[_key(n)] for n in self.names}
        return {n: torch.tensordot(pi.to(w.dtype), w, dims=1) for n, w in stacks.items()}

    def single_model(self, pi: torch.Tensor) -> ImplicitSR:
        """A plain ImplicitSR holding the mixed weights for `pi` (what export and evaluation run)."""
        model = ImplicitSR("edsr-baseline", DecoderConfig(**self.cfg.decoder))
        with torch.no_grad():
            mixed = self.mixed_parameters(pi.detach())
            state = model.state_dict()
            for n, v in mixed.items():
                state[n] = v.clone()
            model.load_state_dict(state)
        return model.eval()

    # ---- forward ---------------------------------------------------------------------------------------
    def predict(self, lr: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor,
                pi: torch.Tensor) -> torch.Tensor:
        """Colours (B, N, 3) in LIIF's normalised units: sample b runs the network mixed by pi[b]."""
        outs = []
        for b in range(lr.shape[0]):
            params = self.mixed_parameters(pi[b])
            outs.append(functional_call(self.template, params, (lr[b : b + 1], coord[b : b + 1], cell[b : b + 1])))
        return torch.cat(outs, dim=0)

    def super_resolve(self, lr: torch.Tensor, out_size: Tuple[int, int],
                      scores: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(1, 3, h, w) in [0, 1] -> (1, 3, H, W), with the estimated code unless `scores` is given."""
        if scores is None:
            scores = torch.sigmoid(self.code_logits(lr))
        pi = self.mixing(scores)[0]
        return self.single_model(pi).super_resolve(lr, out_size)
