"""Input checks of a run: the scale and tile size asked for, and the input's band statistics.

Each check raises MlinError with a message that says what to do, before any pixel is computed, so a
typo costs nothing. The statistics are read once per run (never per tile), see :func:`compute_stats`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from osgeo import gdal

from . import raster_io
from .card import ModelCard
from .errors import MlinError
from .normalise import BandStats, StatsConfig, band_stats
from .raster_io import BandPlan, RasterInfo


def check_scale(scale: object) -> float:
    """A finite number > 1, else MlinError."""
    try:
        value = float(scale)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise MlinError(f"scale must be a number greater than 1 (e.g. 2.5), got {scale!r}.") from None
    if not math.isfinite(value) or value <= 1.0:
        raise MlinError(f"scale must be a number greater than 1 (e.g. 2.5), got {scale!r}; "
                        "super-resolution only enlarges.")
    return value


def check_scale_for_model(scale: float, card: ModelCard) -> list[str]:
    """Refuse scales above the card's hard limit; warn above the recommended one."""
    if scale > card.hard_max_scale:
        raise MlinError(f"scale {scale:g} is above the hard limit x{card.hard_max_scale:g} of model "
                        f"{card.name}; use a scale up to x{card.recommended_max_scale:g} (recommended).")
    if scale > card.recommended_max_scale:
        return [f"scale {scale:g} is above x{card.recommended_max_scale:g}, the largest scale recommended "
                f"for model {card.name} (trained for x{card.trained_scale_min:g}-x{card.trained_scale_max:g}); "
                "expect softer, less reliable detail."]
    return []


def check_tile_size(tile_size: object) -> int | None:
    """None (automatic) or a whole number of LR pixels >= 1 (integral floats from GUIs accepted)."""
    if tile_size is None:
        return None
    try:
        value = float(tile_size)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = float("nan")
    if not (math.isfinite(value) and value.is_integer() and value >= 1):
        raise MlinError(f"tile size must be a whole number of LR pixels >= 1 (e.g. 256), got {tile_size!r}.")
    return int(value)


def compute_stats(ds: gdal.Dataset, info: RasterInfo, plan: BandPlan,
                  config: StatsConfig | None = None) -> dict[int, BandStats]:
    """Per-band statistics from ONE decimated read of the whole raster (never per tile).

    A raster whose decimated read finds no valid pixel is scanned at full resolution before it is
    refused, so a few valid pixels missed by decimation do not make a valid raster fail.
    """
    config = config or StatsConfig()
    w, h = info.width, info.height
    f = max(1.0, max(w, h) / config.sample_side)
    buf = (max(1, int(round(w / f))), max(1, int(round(h / f))))
    bands = plan.data_bands
    values = raster_io.read_bands(ds, bands, (0, 0, w, h), buf)
    valid = raster_io.read_valid(ds, bands, (0, 0, w, h), buf)
    ok = _valid_and_finite(values, valid, info)
    if not ok.any() and not _any_valid_full(ds, info, bands):
        raise MlinError(f"{info.path} has no valid pixels in bands {bands} (all nodata, transparent or "
                        "masked); there is nothing to super-resolve.")
    if not ok.any():  # valid pixels exist but decimation missed them: use a full read for stats
        values = raster_io.read_bands(ds, bands, (0, 0, w, h))
        valid = raster_io.read_valid(ds, bands, (0, 0, w, h))
        ok = _valid_and_finite(values, valid, info)
    return {b: band_stats(values[i], ok, info.dtype, config) for i, b in enumerate(bands)}


def _valid_and_finite(values: np.ndarray, valid: np.ndarray | None, info: RasterInfo) -> np.ndarray:
    ok = np.ones(values.shape[1:], bool) if valid is None else valid.copy()
    if info.dtype.is_float:
        ok &= np.isfinite(values).all(axis=0)
    return ok


def _any_valid_full(ds: gdal.Dataset, info: RasterInfo, bands: Sequence[int], rows: int = 512) -> bool:
    for y in range(0, info.height, rows):
        window = (0, y, info.width, min(rows, info.height - y))
        values = raster_io.read_bands(ds, bands, window)
        if _valid_and_finite(values, raster_io.read_valid(ds, bands, window), info).any():
            return True
    return False
