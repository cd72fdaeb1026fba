"""Halo tiling that gives exactly the whole-image result.

An output pixel ``r`` is queried at LR row ``(r + 0.5) * H / H_out - 0.5``; the decoder reads the
codes at ``floor`` and ``floor + 1`` of that coordinate (LIIF's local ensemble; a tiny epsilon shift
may move both by one), each code is the first layer applied to a 3x3 unfold of latent features, and
each latent feature depends on ``receptive_field`` LR pixels around it. So a tile whose LR *core*
owns the output pixels whose ``floor(coordinate)`` falls inside the core gives the same answer as the
whole image when it reads ``halo = receptive_field + 3`` extra LR pixels on each side
(1 for the ``floor + 1`` neighbour, 1 for the unfold, 1 for the epsilon shift), clipped at the true
image border: a tile touching the border keeps that border, so the decoder's clamping at the border
and the encoder's zero padding there are the same as in a whole-image run.

Ownership and nearest-neighbour indices are computed with integer arithmetic, so they are exact.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Pixels of halo beyond the encoder's receptive field (neighbour + unfold + epsilon shift).
HALO_EXTRA = 3


def halo_for(receptive_field: int) -> int:
    """LR pixels a tile must read beyond its core on each side for exact results."""
    return int(receptive_field) + HALO_EXTRA


def output_size(in_size: tuple[int, int], scale: float) -> tuple[int, int]:
    """Output size ``round(in * scale)`` per axis (the project's convention)."""
    return tuple(max(1, int(round(n * float(scale)))) for n in in_size)  # type: ignore[return-value]


def query_coords(n_in: int, n_out: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    """LR-pixel coordinates (float64) of output pixels ``start..stop-1`` along one axis."""
    stop = n_out if stop is None else stop
    r = np.arange(start, stop, dtype=np.float64)
    return (r + 0.5) * (n_in / n_out) - 0.5


def owner_index(n_in: int, n_out: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    """LR index whose core owns each output pixel: ``clip(floor(coordinate), 0, n_in - 1)``.

    ``floor(((2r + 1) n_in - n_out) / (2 n_out))`` in integers, so there is no rounding doubt.
    """
    stop = n_out if stop is None else stop
    r = np.arange(start, stop, dtype=np.int64)
    return np.clip(((2 * r + 1) * n_in - n_out) // (2 * n_out), 0, n_in - 1)


def nearest_index(n_in: int, n_out: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    """LR pixel nearest to each output pixel centre (for masks and alpha): ``floor(coord + 0.5)``."""
    stop = n_out if stop is None else stop
    r = np.arange(start, stop, dtype=np.int64)
    return np.clip(((2 * r + 1) * n_in) // (2 * n_out), 0, n_in - 1)


@dataclass(frozen=True)
class AxisSpan:
    """One tile along one axis: LR core ``[core_start, core_stop)``, LR read window
    ``[read_start, read_stop)`` (core plus halo, clipped to the image) and the output window
    ``[out_start, out_stop)`` it answers."""

    core_start: int
    core_stop: int
    read_start: int
    read_stop: int
    out_start: int
    out_stop: int

    @property
    def read_size(self) -> int:
        return self.read_stop - self.read_start

    @property
    def out_size(self) -> int:
        return self.out_stop - self.out_start


@dataclass(frozen=True)
class Tile:
    """A 2-D tile: row span and column span (see :class:`AxisSpan`)."""

    index: int
    rows: AxisSpan
    cols: AxisSpan

    @property
    def read_window(self) -> tuple[int, int, int, int]:
        """GDAL order: (xoff, yoff, xsize, ysize) of the LR read window."""
        return self.cols.read_start, self.rows.read_start, self.cols.read_size, self.rows.read_size

    @property
    def out_window(self) -> tuple[int, int, int, int]:
        """GDAL order: (xoff, yoff, xsize, ysize) of the output window."""
        return self.cols.out_start, self.rows.out_start, self.cols.out_size, self.rows.out_size


def plan_axis(n_in: int, n_out: int, tile: int, halo: int) -> list[AxisSpan]:
    """Split one axis into cores of ``tile`` LR pixels; empty output windows are dropped."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got n_in={n_in}, n_out={n_out}")
    tile = max(1, int(tile))
    owners = owner_index(n_in, n_out)
    spans = []
    for a in range(0, n_in, tile):
        b = min(n_in, a + tile)
        o0 = int(np.searchsorted(owners, a, side="left"))
        o1 = int(np.searchsorted(owners, b, side="left"))
        if o1 <= o0:
            continue
        spans.append(AxisSpan(a, b, max(0, a - halo), min(n_in, b + halo), o0, o1))
    return spans


def plan_tiles(in_size: tuple[int, int], out_size: tuple[int, int], tile_size: int | None,
               halo: int) -> list[Tile]:
    """Row-major tiles covering every output pixel exactly once.

    ``tile_size`` is the LR core size (None: one tile for the whole image).
    """
    (h, w), (oh, ow) = in_size, out_size
    t = max(h, w) if tile_size is None else int(tile_size)
    if t < 1:
        raise ValueError(f"tile_size must be >= 1, got {tile_size}")
    rows, cols = plan_axis(h, oh, t, halo), plan_axis(w, ow, t, halo)
    return [Tile(i * len(cols) + j, r, c) for i, r in enumerate(rows) for j, c in enumerate(cols)]


def out_range(n_in: int, n_out: int, start: int, stop: int) -> tuple[int, int]:
    """The output pixels ``[o0, o1)`` whose centres fall inside LR pixels ``[start, stop)``: the
    window's footprint on the whole output grid (so its result is those pixels of the whole result)."""
    inside = nearest_index(n_in, n_out, 0, n_out)
    return int(np.searchsorted(inside, start, side="left")), int(np.searchsorted(inside, stop, side="left"))


def clip_tiles(tiles: list[Tile], rows: tuple[int, int], cols: tuple[int, int]) -> list[Tile]:
    """The tiles that answer output pixels inside rows x cols, their output windows cut to it (their
    read windows unchanged, so every kept pixel still sees its full halo)."""
    from dataclasses import replace

    kept: list[Tile] = []
    for t in tiles:
        r0, r1 = max(t.rows.out_start, rows[0]), min(t.rows.out_stop, rows[1])
        c0, c1 = max(t.cols.out_start, cols[0]), min(t.cols.out_stop, cols[1])
        if r1 > r0 and c1 > c0:
            kept.append(Tile(len(kept), replace(t.rows, out_start=r0, out_stop=r1),
                             replace(t.cols, out_start=c0, out_stop=c1)))
    return kept
