"""Radiometric fidelity: make an SR output average back to its input (numpy only).

Analysts who compute indices or reflectance need the output's area average over each input pixel's
footprint to give back that input pixel. Output pixel ``j`` of an axis spans
``[j n_in / n_out, (j + 1) n_in / n_out)`` in input-pixel-edge units (the grid of ``tiling.py``),
input pixel ``i`` spans ``[i, i + 1)``, and ``A[i, j]`` is their overlap length, so ``A x`` is the
area average. Averaging is separable, ``A = A_rows (x) A_cols``, and the minimum-norm correction
``x + A^T (A A^T)^-1 (y - A x)`` needs only tridiagonal solves per axis: an output pixel (shorter than
an input pixel) overlaps at most two input pixels, so ``A A^T`` couples neighbours only.

Tile-locality: ``(A A^T)^-1`` decays geometrically away from its diagonal (exactly local for
integer scales), so solving on a tile's input pixels plus :func:`reach` pixels each side and keeping
the core matches the whole-raster solve to ``REL_TOL`` of the residuals. Masks: masked input pixels,
and input pixels whose footprint holds a masked output pixel, ask for no change (zero residual), and
masked output pixels receive none.

Index arithmetic is done in integers (units of ``1 / n_out`` input pixel), so it is exact.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .tiling import nearest_index

log = logging.getLogger(__name__)

# Truncation error allowed, relative to the largest residual: the decay of (A A^T)^-1 reached at reach().
REL_TOL = 1e-6
# Longest reach tried (input pixels); only scales very close to 1 decay this slowly.
MAX_REACH = 64


@dataclass(frozen=True)
class AxisArea:
    """Area averaging along one axis, banded: output ``out_start + k`` overlaps input
    ``in_start + lo[k]`` by ``w0[k]`` and ``in_start + lo[k] + 1`` by ``w1[k]`` (input-pixel lengths).
    The outputs are all those that touch inputs ``[in_start, in_stop)``; ``lo`` may be -1 (an output
    straddling in from the left) and ``lo + 1`` may be ``in_stop - in_start`` (straddling out)."""

    in_start: int
    in_stop: int
    out_start: int
    out_stop: int
    lo: np.ndarray
    w0: np.ndarray
    w1: np.ndarray

    @property
    def n_in(self) -> int:
        return self.in_stop - self.in_start


def axis_area(n_in: int, n_out: int, in_start: int, in_stop: int) -> AxisArea:
    """The banded area-averaging operator of input pixels ``[in_start, in_stop)`` of one axis."""
    if not (n_out >= n_in >= 1 and 0 <= in_start < in_stop <= n_in):
        raise ValueError(f"bad axis: n_in={n_in}, n_out={n_out}, inputs [{in_start}, {in_stop})")
    j0 = (in_start * n_out) // n_in
    j1 = min(n_out, -(-(in_stop * n_out) // n_in))
    j = np.arange(j0, j1, dtype=np.int64)
    start, stop = j * n_in, (j + 1) * n_in  # output edges, in 1/n_out input pixels
    lo = start // n_out
    edge = (lo + 1) * n_out
    w0 = (np.minimum(stop, edge) - start) / n_out
    w1 = np.maximum(stop - edge, 0) / n_out
    return AxisArea(in_start, in_stop, int(j0), int(j1), lo - in_start, w0, w1)


def _groups(ax: AxisArea) -> tuple[np.ndarray, int]:
    """Start of each run of equal ``lo`` (``lo`` is sorted and covers every integer of its range:
    each input pixel is longer than an output pixel, so it holds an output's start) and the first ``lo``."""
    starts = np.flatnonzero(np.diff(ax.lo, prepend=ax.lo[0] - 1))
    return starts, int(ax.lo[0])


def average(ax: AxisArea, x: np.ndarray, axis: int) -> np.ndarray:
    """``A x`` along ``axis`` (which must have ``out_stop - out_start`` entries)."""
    xm = np.moveaxis(np.asarray(x, np.float64), axis, 0)
    shape = (1,) * (xm.ndim - 1)
    w0, w1 = ax.w0.reshape(-1, *shape), ax.w1.reshape(-1, *shape)
    starts, first = _groups(ax)
    buf = np.zeros((ax.n_in + 3, *xm.shape[1:]))
    s0 = np.add.reduceat(w0 * xm, starts, axis=0)
    s1 = np.add.reduceat(w1 * xm, starts, axis=0)
    buf[first + 1:first + 1 + len(starts)] += s0
    buf[first + 2:first + 2 + len(starts)] += s1
    return np.moveaxis(buf[1:ax.n_in + 1], 0, axis)


def spread(ax: AxisArea, lam: np.ndarray, axis: int) -> np.ndarray:
    """``A^T lam`` along ``axis`` (which must have ``in_stop - in_start`` entries)."""
    lm = np.moveaxis(np.asarray(lam, np.float64), axis, 0)
    padded = np.concatenate([np.zeros((1, *lm.shape[1:])), lm, np.zeros((1, *lm.shape[1:]))])
    shape = (1,) * (lm.ndim - 1)
    out = ax.w0.reshape(-1, *shape) * padded[ax.lo + 1] + ax.w1.reshape(-1, *shape) * padded[ax.lo + 2]
    return np.moveaxis(out, 0, axis)


def gram(ax: AxisArea) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal and off-diagonal of the tridiagonal ``A A^T`` over the axis's inputs."""
    n = ax.n_in
    diag = (np.bincount(ax.lo + 1, ax.w0 ** 2, minlength=n + 2)[1:n + 1]
            + np.bincount(ax.lo + 2, ax.w1 ** 2, minlength=n + 3)[1:n + 1])
    off = np.bincount(ax.lo + 1, ax.w0 * ax.w1, minlength=n + 2)[1:n]
    return diag, off


def solve_tridiagonal(diag: np.ndarray, off: np.ndarray, rhs: np.ndarray, axis: int) -> np.ndarray:
    """Solve the symmetric tridiagonal system along ``axis`` of ``rhs`` (Thomas algorithm, vectorised
    over the other axes; stable here because ``A A^T`` is symmetric positive definite)."""
    r = np.moveaxis(np.asarray(rhs, np.float64), axis, 0).copy()
    n = len(diag)
    if not off.any():  # integer scale: the rows do not couple
        return np.moveaxis(r / diag.reshape(-1, *(1,) * (r.ndim - 1)), 0, axis)
    denom = np.empty(n)
    upper = np.zeros(n)
    denom[0] = diag[0]
    for i in range(1, n):
        upper[i - 1] = off[i - 1] / denom[i - 1]
        denom[i] = diag[i] - off[i - 1] * upper[i - 1]
    r[0] /= denom[0]
    for i in range(1, n):
        r[i] = (r[i] - off[i - 1] * r[i - 1]) / denom[i]
    for i in range(n - 2, -1, -1):
        r[i] -= upper[i] * r[i + 1]
    return np.moveaxis(r, 0, axis)


def reach(n_in: int, n_out: int, rel_tol: float = REL_TOL) -> int:
    """Input pixels beyond a tile's own that its solve needs for ``rel_tol`` accuracy: where the
    entries of ``(A A^T)^-1`` (normalised by its diagonal) fall below ``rel_tol``. Zero for integer
    scales (the averages do not overlap); measured on windows sampled along the axis otherwise."""
    if n_out % n_in == 0:
        return 0
    side = MAX_REACH
    width = 2 * side + 1
    if n_in <= width:
        starts = [0]
    else:
        starts = sorted({int(s) for s in np.linspace(0, n_in - width, 12)})
    worst = 0
    for s in starts:
        diag, off = gram(axis_area(n_in, n_out, s, min(n_in, s + width)))
        g = np.diag(diag) + np.diag(off, 1) + np.diag(off, -1)
        inv = np.linalg.inv(g)
        norm = np.abs(inv) / np.sqrt(np.outer(np.diag(inv), np.diag(inv)))
        for k in range(1, len(diag)):
            if np.max(np.abs(np.diag(norm, k))) < rel_tol:
                break
            worst = max(worst, k)
    if worst >= min(MAX_REACH, n_in) - 1 and n_in > width:
        log.warning("fidelity: (A A^T)^-1 decays slowly at x%.4g; tiles keep %d input pixels of reach",
                    n_out / n_in, worst)
    return worst


def tile_inputs(n_in: int, n_out: int, out_start: int, out_stop: int, extra: int) -> tuple[int, int]:
    """Inputs ``[p0, p1)`` a tile solves on: those its outputs ``[out_start, out_stop)`` touch, plus
    ``extra`` (= :func:`reach`) each side, clipped to the axis."""
    p0 = (out_start * n_in) // n_out
    p1 = -(-(out_stop * n_in) // n_out)
    return max(0, p0 - extra), min(n_in, p1 + extra)


def inside_inputs(n_in: int, n_out: int, out_start: int, out_stop: int) -> tuple[int, int]:
    """Inputs ``[i0, i1)`` whose whole footprint lies in outputs ``[out_start, out_stop)``."""
    return -(-(out_start * n_in) // n_out), (out_stop * n_in) // n_out


def footprint_ok(rows: AxisArea, cols: AxisArea, valid_out: np.ndarray | None) -> np.ndarray | None:
    """Inputs whose footprint holds only valid output pixels (None: all)."""
    if valid_out is None:
        return None
    bad = average(rows, average(cols, (~valid_out).astype(np.float64), 1), 0)
    return bad <= 0.0


def correct(x: np.ndarray, y: np.ndarray, rows: AxisArea, cols: AxisArea, valid_in: np.ndarray | None = None,
            valid_out: np.ndarray | None = None) -> np.ndarray:
    """The minimum-norm correction of ``x`` (bands, outputs of ``rows``, outputs of ``cols``) so that its
    area average over inputs ``y`` (bands, inputs of ``rows``, inputs of ``cols``) equals ``y``.

    Inputs that are masked (``valid_in`` False), not finite, or see a masked output pixel
    (``valid_out`` False) are not constrained; masked outputs are not changed. Returns float64."""
    x = np.asarray(x, np.float64)
    residual = np.asarray(y, np.float64) - average(rows, average(cols, x, 2), 1)
    ok = np.isfinite(residual)
    inside = footprint_ok(rows, cols, valid_out)
    if inside is not None:
        ok &= inside[None]
    if valid_in is not None:
        ok &= valid_in[None]
    residual = np.where(ok, residual, 0.0)
    lam = solve_tridiagonal(*gram(rows), residual, 1)
    lam = solve_tridiagonal(*gram(cols), lam, 2)
    change = spread(rows, spread(cols, lam, 2), 1)
    if valid_out is not None:
        change = np.where(valid_out[None], change, 0.0)
    return x + change


def to_type(values: np.ndarray, low: float, high: float, integer: bool, dtype: np.dtype) -> np.ndarray:
    """Float values -> the raster type: rounded (integers) then clipped to ``[low, high]``."""
    v = np.rint(values) if integer else values
    return np.clip(v, low, high).astype(dtype)


def tile_areas(in_size: tuple[int, int], out_size: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int],
               extra: tuple[int, int]) -> tuple[AxisArea, AxisArea]:
    """Row and column operators of a tile answering outputs ``rows`` x ``cols``: its solve's inputs
    (:func:`tile_inputs`) and every output they touch (what the tile must decode)."""
    (h, w), (oh, ow) = in_size, out_size
    return (axis_area(h, oh, *tile_inputs(h, oh, rows[0], rows[1], extra[0])),
            axis_area(w, ow, *tile_inputs(w, ow, cols[0], cols[1], extra[1])))


def correct_tile(x: np.ndarray, raw: np.ndarray, valid: np.ndarray | None, read_origin: tuple[int, int],
                 in_size: tuple[int, int], out_size: tuple[int, int], areas: tuple[AxisArea, AxisArea],
                 keep: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    """Correct one tile's decoded values ``x`` (bands, outputs of ``areas``) against the input values
    ``raw`` (bands, read window at ``read_origin``) and keep output rows x cols ``keep`` (float64).

    ``valid`` is the read window's validity; an output pixel is valid when its nearest input is (as
    the pipeline masks it)."""
    rows, cols = areas
    r0, c0 = read_origin
    in_r = slice(rows.in_start - r0, rows.in_stop - r0)
    in_c = slice(cols.in_start - c0, cols.in_stop - c0)
    y = np.asarray(raw[:, in_r, in_c], np.float64)
    valid_in = valid_out = None
    if valid is not None:
        valid_in = valid[in_r, in_c]
        ny = nearest_index(in_size[0], out_size[0], rows.out_start, rows.out_stop) - r0
        nx = nearest_index(in_size[1], out_size[1], cols.out_start, cols.out_stop) - c0
        valid_out = valid[np.ix_(ny, nx)]
    fixed = correct(x, y, rows, cols, valid_in, valid_out)
    (k0, k1), (j0, j1) = keep
    return fixed[:, k0 - rows.out_start:k1 - rows.out_start, j0 - cols.out_start:j1 - cols.out_start]
