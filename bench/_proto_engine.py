"""Prototype of the proposed engine change: give each decoder call only the LR rows it reads.

Why: decoder.onnx turns the whole `proj` (1, C, h, w) into a (h*w, C) table (a Transpose) on every
call, so a pipeline tile (LR 334x334 at x2, C = 256: 114 MB) pays that copy once per chunk of
queries, and smaller chunks, which are kinder to the caches, pay it more often. A chunk of whole
output rows only reads the LR rows between floor(min row) and floor(max row) + 1, so the engine can
pass that band (plus a 1-row margin for the epsilon shift) and subtract its first row from the row
coordinates. Exact: subtracting an integer from a float32 coordinate >= it is exact, the decoder's
border clamping only happens at a band edge that is also the tile's edge, and every query gathers
the same codes. Used by `python -m bench tune`; the diff for engine.py is in docs/PERFORMANCE.md.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

MARGIN = 1  # extra LR rows on each side: floor(coord + eps) may move by one near a code centre


def row_band(proj: np.ndarray, coord: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(proj rows the queries read, coordinates relative to the first of them)."""
    h = proj.shape[2]
    rows = coord[:, 0]
    lo = max(0, int(math.floor(float(rows.min()))) - MARGIN)
    hi = min(h, int(math.floor(float(rows.max()))) + 2 + MARGIN)
    if lo == 0 and hi == h:
        return proj, coord
    shifted = coord.copy()
    shifted[:, 0] -= np.float32(lo)
    return np.ascontiguousarray(proj[:, :, lo:hi]), shifted


class BandedSession:
    """Wraps an onnxruntime decoder session so each `run` sees only its row band of `proj`."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def run(self, names: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        proj, coord = row_band(feeds["proj"], feeds["coord"])
        return self.session.run(names, dict(feeds, proj=proj, coord=coord))

    def __getattr__(self, name: str) -> Any:  # get_outputs, get_providers, ... pass through
        return getattr(self.session, name)
