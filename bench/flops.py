"""Exact multiply-add counts of the decoder, from the model's layer sizes.

Only the matrix products are counted (Linear layers, the coordinate/cell terms and the projection
convolution): they are what a GEMM peak can be compared with; element-wise work (ReLU, gathers,
mixing) is overhead the achieved GFLOP/s has to absorb. tests/test_bench_flops.py checks these
counts against torch's own FLOP counter on the real forward passes.
"""
from __future__ import annotations

from torch import nn

from mlin_qgis.ml.decoder import NEIGHBOURS, ImplicitDecoder

K = len(NEIGHBOURS)  # LIIF's local ensemble: four codes per query


def _macs(layers: nn.Module) -> int:
    return sum(m.in_features * m.out_features for m in layers.modules() if isinstance(m, nn.Linear))


def straightforward_macs_per_query(dec: ImplicitDecoder) -> int:
    """`query_reference`: the full MLP (and meta embedding) on each of the 4 unfolded codes.

    LIIF [256]x4: 4 x (580*256 + 3*256*256 + 256*3) = 1,383,424."""
    per_neighbour = _macs(dec.imnet) + (_macs(dec.meta.embed) if dec.meta is not None else 0)
    return K * per_neighbour + (_macs(dec.meta.head) if dec.meta is not None else 0)


def factored_macs_per_query(dec: ImplicitDecoder) -> int:
    """`query`: per neighbour only the 4 coordinate/cell columns of the first layer, then the tail.

    LIIF [256]x4: 4 x (4*256 + 3*256*256 + 256*3) = 793,600."""
    first = dec.imnet.layers[0]
    per_neighbour = 4 * first.out_features + _macs(dec.imnet.layers[1:])
    if dec.meta is not None:  # the meta embedding reads the trunk's last hidden layer
        per_neighbour += _macs(dec.meta.embed)
    return K * per_neighbour + (_macs(dec.meta.head) if dec.meta is not None else 0)


def projection_macs_per_lr_pixel(dec: ImplicitDecoder) -> int:
    """`project`: the first layer(s)' code columns as a 3x3 convolution, once per LR pixel (576*256)."""
    return dec.code_dim * dec.proj_channels


def factored_macs_per_output_pixel(dec: ImplicitDecoder, lr_pixels: int, out_pixels: int,
                                   with_projection: bool = True) -> float:
    """Queries plus the projection amortised over the output pixels (it runs on the LR grid)."""
    amortised = projection_macs_per_lr_pixel(dec) * lr_pixels / out_pixels if with_projection else 0.0
    return factored_macs_per_query(dec) + amortised
