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
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# The four neighbours in LIIF's loop order: (row shift, col shift).
NEIGHBOURS: Tuple[Tuple[int, int], ...] = ((-1, -1), (-1, 1), (1, -1), (1, 1))
WEIGHTINGS = ("area", "meta")
# Nudges a query that sits exactly on a code centre to the same side LIIF's eps_shift picks.
_EPS_PX = 1e-4
_LIIF_EPS = 1e-6


@dataclass
class DecoderConfig:
    feat_dim: int = 64
    hidden: List[int] = field(default_factory=lambda: [256, 256, 256, 256])
    out_dim: int = 3
    weighting: str = "area"  # "area": LIIF local ensemble; "meta": MLIN meta-weight network
    meta_hidden: int = 64
    # logits = log(area weights) + learned correction (zero at start), so meta starts as LIIF.
    meta_residual: bool = True

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting '{self.weighting}'; choose one of: {', '.join(WEIGHTINGS)}")


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

    def tail(self, h1: torch.Tensor) -> torch.Tensor:
        """Everything after the first linear layer (the factored path supplies its output)."""
        return self.layers[1:](h1)


class MetaWeightNet(nn.Module):
    """Sees the four (code, offset, cell) tuples together and proposes four mixing logits.

    Each tuple is embedded by one linear layer (factored like the decoder's first layer), the four
    embeddings are concatenated (fixed neighbour order) and a small MLP outputs a logit correction.
    The last layer starts at zero so the network starts exactly at LIIF's area weights."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Linear(in_dim, hidden)
        self.head = nn.Sequential(nn.Linear(4 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 4))
        nn.init.zeros_(self.head[2].weight)
        nn.init.zeros_(self.head[2].bias)

    def logits(self, embeddings: List[torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat([F.relu(e) for e in embeddings], dim=-1))


class ImplicitDecoder(nn.Module):
    def __init__(self, cfg: DecoderConfig = DecoderConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.code_dim = cfg.feat_dim * 9
        in_dim = self.code_dim + 4
        self.imnet = MLP(in_dim, cfg.hidden, cfg.out_dim)
        self.meta = MetaWeightNet(in_dim, cfg.meta_hidden) if cfg.weighting == "meta" else None

    # ---- factored path -------------------------------------------------------------------
    @property
    def proj_channels(self) -> int:
        return self.first_width + (self.cfg.meta_hidden if self.meta is not None else 0)

    @property
    def first_width(self) -> int:
        return self.cfg.hidden[0] if self.cfg.hidden else self.cfg.out_dim

    def _first_layers(self) -> List[nn.Linear]:
        first = [self.imnet.layers[0]]
        if self.meta is not None:
            first.append(self.meta.embed)
        return first

    def project(self, feat: torch.Tensor) -> torch.Tensor:
        """Apply the first layer(s) to every 3x3-unfolded code at once, as a 3x3 convolution."""
        weights, biases = [], []
        c = self.cfg.feat_dim
        for layer in self._first_layers():
            weights.append(layer.weight[:, : self.code_dim].reshape(-1, c, 3, 3))
            biases.append(layer.bias)
        return F.conv2d(feat, torch.cat(weights), torch.cat(biases), padding=1)

    def query(
        self, proj: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Colours at `coord` (B, N, 2) in LR pixel units (row, col) for output cells `cell` (B, N, 2).

        Returns (rgb (B, N, out), mixing weights (B, N, 4), LIIF area weights (B, N, 4))."""
        b, c, h, w = proj.shape
        n = coord.shape[1]
        flat = proj.permute(0, 2, 3, 1).reshape(b * h * w, c)
        offset = (torch.arange(b, device=proj.device) * (h * w)).view(b, 1)
        base = torch.floor(coord + _EPS_PX)
        rel_cell = cell * 2.0  # LIIF's cell input is in half-pixel units
        hid = self.first_width
        w1 = self.imnet.layers[0].weight
        w_geo = w1[:, self.code_dim :]  # coordinate and cell columns
        m_geo = self.meta.embed.weight[:, self.code_dim :] if self.meta is not None else None

        preds, areas, embeds = [], [], []
        for dy, dx in NEIGHBOURS:
            iy = torch.clamp(base[..., 0] + (dy + 1) // 2, 0, h - 1)
            ix = torch.clamp(base[..., 1] + (dx + 1) // 2, 0, w - 1)
            rel = torch.stack(((coord[..., 0] - iy) * 2.0, (coord[..., 1] - ix) * 2.0), dim=-1)
            idx = (iy * w + ix).long() + offset
            code = flat[idx.reshape(-1)].reshape(b, n, c)
            geo = torch.cat((rel, rel_cell), dim=-1)
            preds.append(self.imnet.tail(code[..., :hid] + geo @ w_geo.t()))
            areas.append(torch.abs(rel[..., 0] * rel[..., 1]) + 1e-9)
            if m_geo is not None:
                embeds.append(code[..., hid:] + geo @ m_geo.t())
        return self._mix(preds, areas, embeds)

    def _mix(
        self, preds: List[torch.Tensor], areas: List[torch.Tensor], embeds: List[torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Each neighbour is weighted by the area of the rectangle diagonally opposite to it.
        area = torch.stack(areas[::-1], dim=-1)
        area_w = area / area.sum(dim=-1, keepdim=True)
        if self.meta is None:
            weights = area_w
        else:
            correction = self.meta.logits(embeds)
            logits = torch.log(area_w) + correction if self.cfg.meta_residual else correction
            weights = torch.softmax(logits, dim=-1)
        rgb = sum(p * weights[..., i : i + 1] for i, p in enumerate(preds))
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
        preds, areas, embeds = [], [], []
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
            preds.append(self.imnet(inp))
            areas.append(torch.abs(rel[..., 0] * rel[..., 1]) + 1e-9)
            if self.meta is not None:
                embeds.append(self.meta.embed(inp))
        return self._mix(preds, areas, embeds)


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
