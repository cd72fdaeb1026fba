"""The largest output a run can make, checked before anything is allocated.

The output grid of an input of ``(H, W)`` pixels at scale ``s`` is ``round(H * s) x round(W * s)``
(``tiling.output_size``). Planning a run keeps an int64 index per output row and per output column
(``tiling.owner_index``, ``nearest_index``), and GDAL counts pixels per side in a C ``int``; so a side
above :data:`MAX_OUTPUT_SIDE` is refused here, in float arithmetic only, before any array of that size
exists (``sr --scale 1e9`` once asked numpy for 1.16 TiB). The total size is checked later against the
free disk space, where the output is planned (``pipeline.plan_run``).
"""
from __future__ import annotations

import math
from typing import Sequence

from .errors import RasterError
from .tiling import output_size

# 2**24 = 16,777,216 px per side: the row and column indices then take at most 128 MiB each, and GDAL's
# own limit (2**31 - 1) is far away. A 100,000 px raster can still be enlarged x167.
MAX_OUTPUT_SIDE = 1 << 24


def _count(value: float) -> str:
    return f"{value:,.0f}" if value < 1e15 else f"{value:.3g}"


def output_grid(in_size: Sequence[int], scale: float) -> tuple[int, int]:
    """The whole output grid ``(rows, cols)`` of an ``in_size = (rows, cols)`` input at ``scale`` (a
    number already checked to be finite and > 1), or RasterError when a side would exceed
    :data:`MAX_OUTPUT_SIDE`. Call it before ``tiling.output_size`` and anything that allocates."""
    h, w = int(in_size[0]), int(in_size[1])
    sides = (h * float(scale), w * float(scale))
    if not all(side < MAX_OUTPUT_SIDE + 0.5 for side in sides):  # also false for inf and NaN
        limit = math.floor(MAX_OUTPUT_SIDE / max(h, w, 1) * 100) / 100
        advice = f"use a scale up to x{limit:g}, or cut the raster" if limit > 1 else "cut the raster"
        raise RasterError(
            f"the output would be {_count(sides[1])} x {_count(sides[0])} px (x{float(scale):g} of {w} x {h} px), "
            f"too large to make: no side may exceed {MAX_OUTPUT_SIDE:,} px; {advice} into smaller pieces first.")
    return output_size((h, w), scale)
