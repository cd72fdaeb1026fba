"""Prototypes of other exact forms of `ImplicitDecoder.query`, exported and timed by `bench tune`.

- `fused_query`: the four neighbours batched into one pass. The exported decoder runs LIIF's loop
  literally (4 gathers, 4 tail MLPs on (1, N, 256) rows); onnxruntime does not fuse 3-D MatMul + Add
  (bias) + Relu.
  Here the four neighbours' rows form one (4BN, C) 2-D block: one Gather, one `addmm` for the
  coordinate/cell terms (Gemm with the codes as C), one tail MLP whose Linear layers export as
  Gemm and fuse with their Relu (FusedGemm). `channels_last` takes proj as (B, h, w, C).
- `channels_first_query`: codes gathered straight from proj's (C, h*w) rows and the tail MLP as
  1x1 convolutions (MLAS NCHWc kernels add bias and ReLU in cache).

Measured on 2 Zen 3 cores (docs/PERFORMANCE.md): neither beats the shipped graph once the engine
uses small chunks (4096 queries), where the shipped graph's four (4096, 256) blocks already stay in
cache; the fused form is ~20 % slower there, channels-first ~40 % slower. So mlin_qgis/ml/decoder.py
keeps its form; these stay here so `bench tune` can re-check them (e.g. on a GPU, where fewer,
larger kernels may matter). The tests in tests/test_bench_exact.py keep them exact.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from mlin_qgis.ml.decoder import _EPS_PX, NEIGHBOURS, ImplicitDecoder

# (d + 1) // 2 of NEIGHBOURS, in LIIF's loop order: which corner of the cell each neighbour reads.
_ROW_SHIFT = tuple((dy + 1) // 2 for dy, _ in NEIGHBOURS)
_COL_SHIFT = tuple((dx + 1) // 2 for _, dx in NEIGHBOURS)


def fused_query(dec: ImplicitDecoder, proj: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor,
                channels_last: bool = False) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Same contract as `ImplicitDecoder.query`; `channels_last` takes proj as (B, h, w, C)."""
    if channels_last:
        b, h, w, c = proj.shape
        flat = proj.reshape(b * h * w, c)
    else:
        b, c, h, w = proj.shape
        flat = proj.permute(0, 2, 3, 1).reshape(b * h * w, c)
    n = coord.shape[1]
    base = torch.floor(coord + _EPS_PX)
    row_shift = torch.tensor(_ROW_SHIFT, dtype=coord.dtype, device=coord.device)
    col_shift = torch.tensor(_COL_SHIFT, dtype=coord.dtype, device=coord.device)
    iy = torch.clamp(base[..., 0:1] + row_shift, 0, h - 1)  # (B, N, 4)
    ix = torch.clamp(base[..., 1:2] + col_shift, 0, w - 1)
    rel = torch.stack(((coord[..., 0:1] - iy) * 2.0, (coord[..., 1:2] - ix) * 2.0), dim=-1)  # (B, N, 4, 2)
    offset = (torch.arange(b, device=proj.device) * (h * w)).view(b, 1, 1)
    idx = (iy * w + ix).long() + offset
    code = flat[idx.reshape(-1)]  # (4BN, C): one Gather for all four neighbours
    rel_cell = (cell * 2.0).unsqueeze(2).expand(b, n, 4, 2)  # LIIF's cell input is in half-pixel units
    geo = torch.cat((rel, rel_cell), dim=-1).reshape(-1, 4)
    w1 = dec.imnet.layers[0].weight
    # code + geo @ w_geo^T as one Gemm (C = code: proj is exactly the first layer).
    hidden = dec.imnet.trunk_tail(torch.addmm(code, geo, w1[:, dec.code_dim:].t()))
    pred = dec.imnet.head(hidden).view(b, n, 4, -1)
    area = torch.abs(rel[..., 0] * rel[..., 1]) + 1e-9  # (B, N, 4)
    # Each neighbour is weighted by the area of the rectangle diagonally opposite to it.
    area = torch.flip(area, dims=(-1,))
    area_w = area / area.sum(dim=-1, keepdim=True)
    if dec.meta is None:
        weights = area_w
    else:
        # the four neighbours' trunk features side by side, in order; 2-D so the Linear layers are Gemms
        correction = dec.meta.logits_from_stack(hidden.view(b * n, 4, -1)).view(b, n, 4)
        logits = torch.log(area_w) + correction if dec.cfg.meta_residual else correction
        weights = torch.softmax(logits, dim=-1)
    rgb = (pred * weights.unsqueeze(-1)).sum(dim=2)
    return rgb, weights, area_w


class _Graph(nn.Module):
    """The decoder graph of `mlin_qgis.ml.export`, with a prototype query."""

    def __init__(self, dec: ImplicitDecoder, variant: str) -> None:
        super().__init__()
        self.dec, self.variant = dec, variant

    def forward(self, proj: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor):
        coord, cell = coord.unsqueeze(0), cell.unsqueeze(0)
        if self.variant == "channels-first":
            rgb, weights, area = channels_first_query(self.dec, proj, coord, cell)
        else:
            rgb, weights, area = fused_query(self.dec, proj, coord, cell, self.variant == "fused-nhwc")
        return rgb[0], weights[0], area[0]


VARIANTS = ("fused", "fused-nhwc", "channels-first")


def export_decoder(dec: ImplicitDecoder, path: Path, card: dict, variant: str = "fused") -> Path:
    """Write a decoder.onnx with a prototype query (one of VARIANTS) and the card, as export.py does."""
    channels_last = variant == "fused-nhwc"
    import onnx

    from mlin_qgis.ml.export import CARD_KEY, OPSET

    c = dec.proj_channels
    proj = torch.randn(1, 24, 20, c) if channels_last else torch.randn(1, c, 24, 20)
    coord, cell = torch.rand(50, 2) * 18, torch.full((50, 2), 0.3)
    axes = {1: "h", 2: "w"} if channels_last else {2: "h", 3: "w"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Graph(dec.eval(), variant), (proj, coord, cell), str(path), opset_version=OPSET, dynamo=False,
            input_names=["proj", "coord", "cell"], output_names=["rgb", "weights", "area_weights"],
            dynamic_axes={"proj": axes, "coord": {0: "n"}, "cell": {0: "n"},
                          "rgb": {0: "n"}, "weights": {0: "n"}, "area_weights": {0: "n"}},
        )
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = CARD_KEY, json.dumps(card, sort_keys=True)
    onnx.save(proto, str(path))
    return path


def channels_first_query(dec: ImplicitDecoder, proj: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor
                         ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Same contract as `ImplicitDecoder.query`, computed channels-first: the codes are gathered
    straight from proj's (C, h*w) rows (no transpose of proj), the four neighbours' rows stacked as
    the spatial axis of a (1, C, 4BN, 1) map, and the tail MLP run as 1x1 convolutions, whose
    onnxruntime/MLAS kernels add the bias and apply ReLU block by block while the block is in cache
    (Gemm does them as separate passes over the whole output)."""
    b, c, h, w = proj.shape
    n = coord.shape[1]
    # (C, B*h*w); for one image (the exported graph) a reshape, so no copy of proj at all
    table = proj.reshape(c, h * w) if b == 1 else proj.permute(1, 0, 2, 3).reshape(c, b * h * w)
    base = torch.floor(coord + _EPS_PX)  # (B, N, 2)
    row_shift = torch.tensor(_ROW_SHIFT, dtype=coord.dtype, device=coord.device).view(4, 1, 1)
    col_shift = torch.tensor(_COL_SHIFT, dtype=coord.dtype, device=coord.device).view(4, 1, 1)
    iy = torch.clamp(base[..., 0] + row_shift, 0, h - 1)  # (4, B, N): neighbour-major
    ix = torch.clamp(base[..., 1] + col_shift, 0, w - 1)
    rel_y, rel_x = (coord[..., 0] - iy) * 2.0, (coord[..., 1] - ix) * 2.0
    offset = (torch.arange(b, device=proj.device) * (h * w)).view(1, b, 1)
    idx = ((iy * w + ix).long() + offset).reshape(-1)
    code = table.index_select(1, idx).view(1, c, -1, 1)  # (1, C, 4BN, 1)
    cells = (cell * 2.0).unsqueeze(0).expand(4, b, n, 2)
    geo = torch.stack((rel_y, rel_x, cells[..., 0], cells[..., 1])).view(1, 4, -1, 1)

    def conv(x: torch.Tensor, layer: nn.Linear, bias: bool = True) -> torch.Tensor:
        weight = layer.weight if x.shape[1] == layer.in_features else layer.weight[:, dec.code_dim:]
        return F.conv2d(x, weight.reshape(weight.shape[0], -1, 1, 1), layer.bias if bias else None)

    x = code + conv(geo, dec.imnet.layers[0], bias=False)  # the first layer's bias is inside proj
    for layer in dec.imnet.layers[1:-1]:
        x = layer(x) if not isinstance(layer, nn.Linear) else conv(x, layer)
    hidden = x  # (1, H, 4BN, 1): the trunk's last hidden layer
    pred = conv(hidden, dec.imnet.layers[-1]).view(-1, 4, b, n)  # (out, 4, B, N)
    area = torch.abs(rel_y * rel_x) + 1e-9  # (4, B, N)
    area = torch.flip(area, dims=(0,))
    area_w = area / area.sum(dim=0, keepdim=True)
    if dec.meta is None:
        weights = area_w
    else:
        rows = hidden.view(-1, 4, b, n).permute(2, 3, 1, 0)  # (B, N, 4, H)
        correction = dec.meta.logits_from_stack(rows).permute(2, 0, 1)
        logits = torch.log(area_w) + correction if dec.cfg.meta_residual else correction
        weights = torch.softmax(logits, dim=0)
    rgb = (pred * weights.unsqueeze(0)).sum(dim=1)  # (out, B, N)
    return rgb.permute(1, 2, 0), weights.permute(1, 2, 0), area_w.permute(1, 2, 0)
