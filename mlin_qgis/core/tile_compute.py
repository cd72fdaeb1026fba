"""Computing one tile: read its LR window (with its halo), super-resolve every band group, map back
to the input's data type and re-apply nodata/alpha/mask on the output grid (nearest).

The same function serves the single-process pipeline and a cluster worker's blocks, so both give
the same pixels; writing the result is band_writer.py's job.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from osgeo import gdal

from . import fidelity, raster_io
from .engine import Engine
from .normalise import avoid_value, from_unit, to_unit
from .raster_io import RasterInfo
from .run_plan import RunPlan
from .tiling import Tile, nearest_index


@dataclass
class TileResult:
    """One tile's output window, ready to write: values per output band, validity, deviation."""

    tile: Tile
    values: np.ndarray  # (bands, rows, cols) in the output data type
    valid: np.ndarray | None  # (rows, cols) output validity, None when all valid
    deviation: np.ndarray | None  # (rows, cols) weights-map values


def compute_tile(src: gdal.Dataset, plan: RunPlan, engine: Engine, tile: Tile,
                 want_deviation: bool = False, on_chunk: Callable[[float], None] | None = None) -> TileResult:
    """Read one LR window (with its halo), super-resolve every band group and re-mask the result.

    ``on_chunk(fraction of this tile done)`` runs after every decoder call (progress; cancel there)."""
    info = plan.info
    h, w = info.height, info.width
    out_h, out_w = plan.out_size
    r, c = tile.rows, tile.cols
    window = tile.read_window
    raw = raster_io.read_bands(src, plan.bands.data_bands, window)
    valid = raster_io.read_valid(src, plan.bands.data_bands, window) if plan.masked else None
    if info.dtype.is_float:
        finite = np.isfinite(raw).all(axis=0)
        valid = finite if valid is None else (valid & finite)
    index = {b: i for i, b in enumerate(plan.bands.data_bands)}
    outputs: list[np.ndarray] = []
    deviation: np.ndarray | None = None
    n_groups = len(plan.bands.groups)
    keep = ((r.out_start, r.out_stop), (c.out_start, c.out_stop))
    rows, cols = keep
    areas = None
    if plan.fidelity_reach is not None:  # decode every output the tile's solve touches (fidelity.py)
        areas = fidelity.tile_areas((h, w), plan.out_size, rows, cols, plan.fidelity_reach)
        rows, cols = (areas[0].out_start, areas[0].out_stop), (areas[1].out_start, areas[1].out_stop)
    for g, group in enumerate(plan.bands.groups):
        step = None if on_chunk is None else (
            lambda done, total, g=g: on_chunk((g + done / total) / n_groups))
        channels = [to_unit(raw[index[b]], plan.stats[b], valid) for b in group]
        image = np.stack(channels * 3 if len(group) == 1 else channels)
        rgb, dev = engine.super_resolve_window(image, (r.read_start, c.read_start), (h, w), plan.out_size,
                                               rows, cols, clip=info.dtype.is_byte and areas is None,
                                               want_deviation=want_deviation, ensemble=plan.ensemble, on_chunk=step)
        if len(group) == 1:
            rgb = rgb.mean(axis=0, keepdims=True)
        if areas is None:
            outputs += [from_unit(rgb[i], plan.stats[b], info.dtype) for i, b in enumerate(group)]
        else:  # in float and the input's units, before rounding and clipping
            x = np.stack([rgb[i].astype(np.float64) * plan.stats[b].span + plan.stats[b].lo
                          for i, b in enumerate(group)])
            fixed = fidelity.correct_tile(x, raw[[index[b] for b in group]], valid, (r.read_start, c.read_start),
                                          (h, w), plan.out_size, areas, keep)
            dt = info.dtype
            outputs += list(fidelity.to_type(fixed, dt.min_value, dt.max_value, not dt.is_float, dt.numpy_dtype))
            if dev is not None:
                dev = dev[keep[0][0] - rows[0]:keep[0][1] - rows[0], keep[1][0] - cols[0]:keep[1][1] - cols[0]]
        if dev is not None:
            deviation = dev if deviation is None else np.maximum(deviation, dev)
    ny = nearest_index(h, out_h, r.out_start, r.out_stop) - r.read_start
    nx = nearest_index(w, out_w, c.out_start, c.out_stop) - c.read_start
    out_valid = None if valid is None else valid[np.ix_(ny, nx)]
    for i, values in enumerate(outputs):
        if out_valid is not None:
            value = plan.nodata[i]
            if value is not None:
                avoid_value(values, value, info.dtype)
            values[~out_valid] = invalid_fill(plan.nodata[i], info)
    if plan.bands.alpha is not None:
        alpha = raster_io.read_bands(src, [plan.bands.alpha], window)[0]
        outputs.append(alpha[np.ix_(ny, nx)].astype(info.dtype.numpy_dtype))
    if deviation is not None and out_valid is not None:
        deviation = np.where(out_valid, deviation, np.float32(np.nan)).astype(np.float32)
    return TileResult(tile, np.stack(outputs), out_valid, deviation)


def invalid_fill(nodata: float | None, info: RasterInfo) -> float:
    """What an invalid output pixel holds: its band's nodata, else NaN (float) or 0."""
    if nodata is not None:
        return nodata
    return float("nan") if info.dtype.is_float else 0.0
