"""The implicit decoder: LIIF's local implicit function with a choice of neighbour weighting.

Two forward paths that give the same numbers:
- `query_reference` follows LIIF literally (unfold, nearest grid_sample, concat, full MLP, in
  LIIF's [-1, 1] coordinates). It is the parity oracle and the benchmark's straightforward decoder.
- `project` + `query` factor the first layer: its weights on the 3x3-unfolded features are a 3x3
  convolution run once on the LR grid, so each query only gathers a projected code and adds its
  coordinate and cell terms. Coordinates are in LR pixel units (see docs/ARCHITECTURE.md), which
  makes tiles translation invariant. This is the form exported to ONNX and used in training.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple, cast

import torch
import torch.nn.functional as F
from torch import nn

from mlin_qgis.core.errors import ConfigError

from .registry import Registry

# The four neighbours in LIIF's loop order: (row shift, col shift).
NEIGHBOURS: Tuple[Tuple[int, int], ...] = ((-1, -1), (-1, 1), (1, -1), (1, 1))
# How the four neighbour predictions are mixed, by config name: a factory of the learned part (None: none).
WEIGHTINGS: Registry[Optional[MetaWeightNet]] = Registry("weighting")
# Nudges a query that sits exactly on a code centre to the same side LIIF's eps_shift picks.
_EPS_PX = 1e-4
_LIIF_EPS = 1e-6


@dataclass
class DecoderConfig:
    feat_dim: int = 64
    hidden: List[int] = field(default_factory=lambda: [256, 256, 256, 256])
    out_dim: int = 3
    weighting: str = "area"  # "area": LIIF local ensemble; "meta": MLIN meta-weight network
    meta_hidden: int = 64  # width of the meta head that sees the four neighbours together
    meta_embed: int = 32  # per-neighbour embedding of the trunk's last hidden layer
    # logits = log(area weights) + learned correction (zero at start), so meta starts as LIIF.
    meta_residual: bool = True

    def __post_init__(self) -> None:
        WEIGHTINGS.get(self.weighting)  # an unknown name fails here, listing the registered ones


class MLP(nn.Module):
    """LIIF's MLP (keys layers.0 … layers.8 as in the official checkpoint)."""

    def __init__(self, in_dim: int, hidden: List[int], out_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        last = in_dim
        for width in hidden:
            layers += [nn.Linear(last, width), nn.ReLU()]
            last = width
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    @property
    def first_layer(self) -> nn.Linear:
        """The first linear layer (the factored path applies it as a convolution plus geometry terms)."""
        layer = self.layers[0]
        assert isinstance(layer, nn.Linear)
        return layer

    def tail(self, h1: torch.Tensor) -> torch.Tensor:
        """Everything after the first linear layer (the factored path supplies its output)."""
        return self.layers[1:](h1)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer (after its ReLU): what the meta-weight network reads."""
        return self.layers[:-1](x)

    def trunk_tail(self, h1: torch.Tensor) -> torch.Tensor:
        """`trunk` from the first linear layer's output (the factored path)."""
        return self.layers[1:-1](h1)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """The output layer: last hidden layer -> colour."""
        return self.layers[-1](hidden)


class MetaWeightNet(nn.Module):
    """Sees the four (code, offset, cell) tuples together and proposes four mixing logits.

    A tuple is described by the decoder trunk's last hidden layer for it (the MLP up to its output
    layer): a function of exactly (code, offset, cell) that is already meaningful at the start,
    because the trunk comes from LIIF. Each description is embedded by one shared linear layer, the
    four embeddings are concatenated in the fixed neighbour order (so the head can compare the
    neighbours, e.g. see that two of them disagree across an edge) and a small MLP outputs a
    logit correction. The last layer starts at zero, so MLIN starts exactly at LIIF's area weights.
    (A first version embedded the raw 580-d tuples with a fresh linear layer; at the CPU budget it
    hardly moved from the area weights and tied the ablation: models/mlin-edsr-ucmerced/MODEL_CARD.md.)"""

    def __init__(self, in_dim: int, embed: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Linear(in_dim, embed)
        first, out = nn.Linear(4 * embed, hidden), nn.Linear(hidden, 4)  # built in this order, as ever
        self.head = nn.Sequential(first, nn.ReLU(), out)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)

    def logits_from_stack(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., 4, in_dim) trunk features of the four neighbours -> (..., 4) logit corrections."""
        return self.head(F.relu(self.embed(hidden)).flatten(-2))

    def logits(self, hiddens: List[torch.Tensor]) -> torch.Tensor:
        return self.logits_from_stack(torch.stack(hiddens, dim=-2))


@WEIGHTINGS.register("area")
def area_weighting(cfg: DecoderConfig) -> None:
    """LIIF's local ensemble: the areas alone weight the neighbours, nothing is learned."""
    return None


@WEIGHTINGS.register("meta")
def meta_weighting(cfg: DecoderConfig) -> MetaWeightNet:
    """MLIN: a meta-weight network reading the trunk's last hidden layer, so the trunk needs one."""
    if not cfg.hidden:
        raise ConfigError("meta weighting needs a decoder MLP with a hidden layer (the meta network reads the last)")
    return MetaWeightNet(cfg.hidden[-1], cfg.meta_embed, cfg.meta_hidden)


class ImplicitDecoder(nn.Module):
    def __init__(self, cfg: Optional[DecoderConfig] = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg if cfg is not None else DecoderConfig()
        self.code_dim = cfg.feat_dim * 9
        in_dim = self.code_dim + 4
        self.imnet = MLP(in_dim, cfg.hidden, cfg.out_dim)
        # after the MLP, as always: the random initialisation order (and so every seeded run) is unchanged
        self.meta: Optional[MetaWeightNet] = WEIGHTINGS.get(cfg.weighting)(cfg)

    # ---- factored path -------------------------------------------------------------------
    @property
    def proj_channels(self) -> int:
        return self.first_width

    @property
    def first_width(self) -> int:
        return self.cfg.hidden[0] if self.cfg.hidden else self.cfg.out_dim

    def project(self, feat: torch.Tensor) -> torch.Tensor:
        """Apply the first layer to every 3x3-unfolded code at once, as a 3x3 convolution."""
        first = self.imnet.first_layer
        weight = first.weight[:, : self.code_dim].reshape(-1, self.cfg.feat_dim, 3, 3)
        return F.conv2d(feat, weight, first.bias, padding=1)

    def query(
        self, proj: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Colours at `coord` (B, N, 2) in LR pixel units (row, col) for output cells `cell` (B, N, 2).

        Returns (rgb (B, N, out), mixing weights (B, N, 4), LIIF area weights (B, N, 4))."""
        return self._mix(*self._neighbours(proj, coord, cell))

    def neighbour_colours(self, proj: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """The four neighbours' own colours (B, N, 4, out) before mixing, in LIIF's loop order (what
        the mixing weights choose between; used by the diagnostics)."""
        return torch.stack(self._neighbours(proj, coord, cell)[0], dim=-2)

    def _neighbours(
        self, proj: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor], List[torch.Tensor]]:
        """Per neighbour: colour, LIIF area (before the diagonal swap) and trunk's last hidden layer."""
        b, c, h, w = proj.shape
        n = coord.shape[1]
        flat = proj.permute(0, 2, 3, 1).reshape(b * h * w, c)
        offset = (torch.arange(b, device=proj.device) * (h * w)).view(b, 1)
        base = torch.floor(coord + _EPS_PX)
        rel_cell = cell * 2.0  # LIIF's cell input is in half-pixel units
        w_geo = self.imnet.first_layer.weight[:, self.code_dim :]  # coordinate and cell columns

        preds, areas, hiddens = [], [], []
        for dy, dx in NEIGHBOURS:
            iy = torch.clamp(base[..., 0] + (dy + 1) // 2, 0, h - 1)
            ix = torch.clamp(base[..., 1] + (dx + 1) // 2, 0, w - 1)
            rel = torch.stack(((coord[..., 0] - iy) * 2.0, (coord[..., 1] - ix) * 2.0), dim=-1)
            idx = (iy * w + ix).long() + offset
            code = flat[idx.reshape(-1)].reshape(b, n, c)
            geo = torch.cat((rel, rel_cell), dim=-1)
            first = code + geo @ w_geo.t()
            hidden = self.imnet.trunk_tail(first) if self.cfg.hidden else first  # no hidden: linear
            preds.append(self.imnet.head(hidden) if self.cfg.hidden else first)
            areas.append(torch.abs(rel[..., 0] * rel[..., 1]) + 1e-9)
            hiddens.append(hidden)
        return preds, areas, hiddens

    def _mix(
        self, preds: List[torch.Tensor], areas: List[torch.Tensor], hiddens: List[torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Each neighbour is weighted by the area of the rectangle diagonally opposite to it.
        area = torch.stack(areas[::-1], dim=-1)
        area_w = area / area.sum(dim=-1, keepdim=True)
        if self.meta is None:
            weights = area_w
        else:
            correction = self.meta.logits(hiddens)
            logits = torch.log(area_w) + correction if self.cfg.meta_residual else correction
            weights = torch.softmax(logits, dim=-1)
        # four neighbours, so never the empty sum's 0
        rgb = cast(torch.Tensor, sum(p * weights[..., i : i + 1] for i, p in enumerate(preds)))
        return rgb, weights, area_w

    # ---- LIIF-literal path ------------------------------------------------------------------
    def query_reference(
        self, feat: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """LIIF's query_rgb: `coord`/`cell` in LIIF's [-1, 1] units (row, col)."""
        b, c, h, w = feat.shape
        unfolded = F.unfold(feat, 3, padding=1).view(b, c * 9, h, w)
        rx, ry = 1.0 / h, 1.0 / w
        feat_coord = make_coord((h, w), device=feat.device).permute(2, 0, 1).unsqueeze(0).expand(b, 2, h, w)
        preds, areas, hiddens = [], [], []
        for dy, dx in NEIGHBOURS:
            shifted = coord.clone()
            shifted[..., 0] += dy * rx + _LIIF_EPS
            shifted[..., 1] += dx * ry + _LIIF_EPS
            shifted.clamp_(-1 + 1e-6, 1 - 1e-6)
            grid = shifted.flip(-1).unsqueeze(1)
            q_feat = F.grid_sample(unfolded, grid, mode="nearest", align_corners=False)[:, :, 0, :].permute(0, 2, 1)
            q_coord = F.grid_sample(feat_coord, grid, mode="nearest", align_corners=False)[:, :, 0, :].permute(0, 2, 1)
            rel = coord - q_coord
            rel = torch.stack((rel[..., 0] * h, rel[..., 1] * w), dim=-1)
            rel_cell = torch.stack((cell[..., 0] * h, cell[..., 1] * w), dim=-1)
            inp = torch.cat((q_feat, rel, rel_cell), dim=-1)
            hidden = self.imnet.trunk(inp)
            preds.append(self.imnet.head(hidden))
            areas.append(torch.abs(rel[..., 0] * rel[..., 1]) + 1e-9)
            hiddens.append(hidden)
        return self._mix(preds, areas, hiddens)


def make_coord(shape: Tuple[int, int], device: torch.device | None = None) -> torch.Tensor:
    """Pixel-centre coordinates in LIIF's [-1, 1] convention, shape (H, W, 2) as (row, col)."""
    axes = [(-1 + (2 * torch.arange(n, device=device, dtype=torch.float32) + 1) / n) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def pixel_query_grid(
    lr_size: Tuple[int, int], out_size: Tuple[int, int], device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Query coordinates (H*W, 2) and cells (H*W, 2) in LR pixel units for an output grid.

    Computed in float64 so tiles that subtract an integer origin see the same float32 values' maths."""
    (h, w), (oh, ow) = lr_size, out_size
    rows = (torch.arange(oh, dtype=torch.float64, device=device) + 0.5) * (h / oh) - 0.5
    cols = (torch.arange(ow, dtype=torch.float64, device=device) + 0.5) * (w / ow) - 0.5
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).reshape(-1, 2)
    cell = torch.tensor([h / oh, w / ow], dtype=torch.float64, device=device).expand(oh * ow, 2)
    return grid.to(dtype), cell.to(dtype).contiguous()
