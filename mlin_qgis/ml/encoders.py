"""Encoders without upsampler (EDSR-baseline, RDN), key-compatible with the official LIIF checkpoints.

Layer names mirror LIIF's so `encoder.*` weights of a LIIF checkpoint load without renaming."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .registry import Registry

ENCODERS: Registry[Encoder] = Registry("encoder")


def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=True)


class MeanShift(nn.Conv2d):
    """Present only so official checkpoints load; LIIF's EDSR never applies it without upsampler."""

    def __init__(self) -> None:
        super().__init__(3, 3, kernel_size=1)
        self.weight.data = torch.eye(3).view(3, 3, 1, 1)
        assert self.bias is not None  # built with bias=True
        self.bias.data.zero_()
        for p in self.parameters():
            p.requires_grad = False


class Encoder(nn.Module):
    """What the decoder needs to know of a trunk: its feature width and receptive field (LR px)."""

    out_dim: int
    receptive_field: int


class ResBlock(nn.Module):
    def __init__(self, feats: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(feats, feats), nn.ReLU(inplace=True), _conv(feats, feats))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * self.res_scale + x


@dataclass
class EDSRConfig:
    n_resblocks: int = 16
    n_feats: int = 64
    res_scale: float = 1.0


class EDSR(Encoder):
    """EDSR trunk: head conv, residual blocks, body conv, global skip."""

    def __init__(self, cfg: Optional[EDSRConfig] = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg if cfg is not None else EDSRConfig()
        self.sub_mean = MeanShift()
        self.add_mean = MeanShift()
        self.head = nn.Sequential(_conv(3, cfg.n_feats))
        blocks: list[nn.Module] = [ResBlock(cfg.n_feats, cfg.res_scale) for _ in range(cfg.n_resblocks)]
        self.body = nn.Sequential(*blocks, _conv(cfg.n_feats, cfg.n_feats))
        self.out_dim = cfg.n_feats
        # Every 3x3 conv widens the dependency by one pixel on each side.
        self.receptive_field = 1 + 2 * cfg.n_resblocks + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        return self.body(x) + x


class RDBConv(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv(cin, growth), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.conv(x)), 1)


class RDB(nn.Module):
    def __init__(self, g0: int, growth: int, n_layers: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(*[RDBConv(g0 + c * growth, growth) for c in range(n_layers)])
        self.LFF = nn.Conv2d(g0 + n_layers * growth, g0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LFF(self.convs(x)) + x


@dataclass
class RDNConfig:
    g0: int = 64
    n_blocks: int = 16
    n_layers: int = 8
    growth: int = 64


class RDN(Encoder):
    """Residual dense network trunk (LIIF's RDN, configuration B, no upsampler)."""

    def __init__(self, cfg: Optional[RDNConfig] = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg if cfg is not None else RDNConfig()
        self.SFENet1 = _conv(3, cfg.g0)
        self.SFENet2 = _conv(cfg.g0, cfg.g0)
        self.RDBs = nn.ModuleList([RDB(cfg.g0, cfg.growth, cfg.n_layers) for _ in range(cfg.n_blocks)])
        self.GFF = nn.Sequential(nn.Conv2d(cfg.n_blocks * cfg.g0, cfg.g0, 1), _conv(cfg.g0, cfg.g0))
        self.out_dim = cfg.g0
        self.receptive_field = 2 + cfg.n_blocks * cfg.n_layers + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.SFENet1(x)
        x = self.SFENet2(f1)
        outs = []
        for block in self.RDBs:
            x = block(x)
            outs.append(x)
        return self.GFF(torch.cat(outs, 1)) + f1


@ENCODERS.register("edsr-baseline")
def edsr_baseline(**kwargs: object) -> Encoder:
    return EDSR(EDSRConfig())


@ENCODERS.register("rdn")
def rdn(**kwargs: object) -> Encoder:
    return RDN(RDNConfig())


def build_encoder(name: str) -> Encoder:
    """Build an encoder by its LIIF name ('edsr-baseline', 'rdn'); extra LIIF args are ignored."""
    return ENCODERS.get(name)()
