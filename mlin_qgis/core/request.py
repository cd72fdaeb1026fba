"""What one `sr` run is asked to do (:class:`SuperResolveRequest`) and the callbacks a run takes.

Kept apart from the pipeline so that the run plan, the cluster driver and batch can take a request
without importing the orchestration that runs it (the imports only ever go down).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Sequence

from .raster_io import DEFAULT_COMPRESSION

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]


@dataclass
class SuperResolveRequest:
    """One `sr` run (see docs/ARCHITECTURE.md); ``all_bands`` and ``threads`` are extensions."""

    input_path: str | os.PathLike
    output_path: str | os.PathLike
    scale: float
    model: str | os.PathLike | None = None
    bands: Sequence[int] | None = None
    tile_size: int | None = None
    device: str = "auto"
    weights_map_path: str | os.PathLike | None = None
    cog: bool = False
    all_bands: bool = False
    threads: int | None = None
    ensemble: int = 1  # 8: average the 8 flips/transposes (best quality, 8x the time)
    compression: str = DEFAULT_COMPRESSION  # DEFLATE, ZSTD, LZW or NONE
    # Area of interest (xmin, ymin, xmax, ymax) in the raster's CRS (or in extent_crs, e.g. "EPSG:4326"):
    # snapped outward to input pixels; the halo is read from outside it where the raster has pixels.
    extent: Sequence[float] | None = None
    extent_crs: str | None = None
    precision: str = "fp32"  # int8: the model's quantised decoder (opt-in; its measured cost is in the docs)
    fidelity: bool = False  # correct the output so that it averages back to the input (core/fidelity.py)
    input_looks: str = "auto"  # a degradation-aware model's code: estimated, or named (core/aware.py LOOKS)
