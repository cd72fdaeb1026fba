"""The run plan: everything a run decides before the first pixel, made once by :func:`plan_run`.

The single-process pipeline, a cluster's driver and its workers all read the same :class:`RunPlan`
(paths, bands, output window, georeferencing, statistics, tiles), so every way of running gives the
same pixels. The output window's arithmetic (:func:`output_window`, :func:`window_tiles`) is shared
with the estimate, so what is estimated is what is run.

Output georeferencing: the input's geotransform with pixel size and rotation terms divided by the
effective scale per axis (``sx = W_out / W``, ``sy = H_out / H``: ``gt[1]/sx, gt[2]/sy, gt[4]/sx,
gt[5]/sy``, origin unchanged), so the output covers exactly the input's footprint; same CRS.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from osgeo import gdal

from . import fidelity, raster_io
from .auto import aware_folder, decide_input_looks, wants_auto
from .aware import check_looks, code_spec
from .engine import CPU, CUDA, Engine, check_ensemble
from .errors import MlinError
from .inputs import check_scale, check_scale_for_model, check_tile_size, compute_stats
from .limits import output_grid
from .models import AUTO_MODEL, AWARE_MODEL
from .normalise import BandStats
from .outputs import check_free_space, check_output_path, estimate_bytes, output_nodata
from .raster_io import BandPlan, RasterInfo
from .request import SuperResolveRequest
from .tiling import Tile, clip_tiles, out_range, plan_tiles

log = logging.getLogger(__name__)

# Default LR tile core per provider; shrunk at large scales so one output window stays ~2048 px.
DEFAULT_TILE = {CPU: 256, CUDA: 512}
MAX_OUT_WINDOW = 2048


def default_tile(provider: str, scale: float) -> int:
    """The LR tile core when none is asked for: the provider's, shrunk so an output window stays ~2048 px."""
    return int(max(32, min(DEFAULT_TILE.get(provider, 256), MAX_OUT_WINDOW // math.ceil(scale))))


@dataclass(frozen=True)
class RunPlan:
    """Everything a run decided before the first pixel: validated paths, bands, sizes, masks,
    georeferencing, statistics and tiles. Made once by :func:`plan_run`; tiles (here or on a cluster's
    workers) only read it."""

    input_path: Path
    output_path: Path
    weights_path: Path | None
    scale: float
    info: RasterInfo
    bands: BandPlan
    out_size: tuple[int, int]  # (rows, cols) of the whole output grid (what the queries are made on)
    window: tuple[int, int, int, int]  # output rows [r0, r1) x cols [c0, c1) written (all, without extent)
    scale_xy: tuple[float, float]  # effective (sx, sy) = (W_out / W, H_out / H)
    geotransform: tuple[float, ...] | None
    nodata: tuple[float | None, ...]
    masked: bool  # read validity masks with the data
    per_dataset_mask: bool  # write an internal mask band
    stats: dict[int, BandStats]
    tile_size: int
    tiles: tuple[Tile, ...]
    ensemble: int
    cog: bool
    compression: str
    warnings: tuple[str, ...]
    route: str = ""  # what `auto` picked and why ("" when a model was named)
    input_code: tuple[float, ...] | None = None  # a degradation-aware model's code for this raster
    # --fidelity: each axis's reach (input pixels solved beyond a tile's own, core/fidelity.py); None: off
    fidelity_reach: tuple[int, int] | None = None

    @property
    def window_size(self) -> tuple[int, int]:
        """(rows, cols) of the written output: the whole grid, or the area of interest's part of it."""
        return self.window[1] - self.window[0], self.window[3] - self.window[2]


@dataclass(frozen=True)
class OutputWindow:
    """Where a run writes on the output grid (shared by the plan and the estimate)."""

    grid: tuple[int, int]  # (rows, cols) of the whole output grid
    window: tuple[int, int, int, int]  # output rows [r0, r1) x cols [c0, c1) written
    clipped: bool  # an area of interest: only the tiles over the window are computed

    @property
    def size(self) -> tuple[int, int]:
        """(rows, cols) of the written output."""
        return self.window[1] - self.window[0], self.window[3] - self.window[2]


def output_window(info: RasterInfo, scale: float, lr_window: tuple[int, int, int, int] | None) -> OutputWindow:
    """The output grid of ``info`` at ``scale`` and the part of it an area of interest (``lr_window``,
    from :func:`extent_window`) covers; refuses outputs too large to make (core/limits.py)."""
    grid_h, grid_w = output_grid((info.height, info.width), scale)
    if lr_window is None:
        return OutputWindow((grid_h, grid_w), (0, grid_h, 0, grid_w), False)
    window = (*out_range(info.height, grid_h, lr_window[0], lr_window[1]),
              *out_range(info.width, grid_w, lr_window[2], lr_window[3]))
    return OutputWindow((grid_h, grid_w), window, True)


def window_tiles(info: RasterInfo, out: OutputWindow, tile_size: int, halo: int) -> list[Tile]:
    """The halo tiles that compute ``out``'s window (clipped to it for an area of interest)."""
    tiles = plan_tiles((info.height, info.width), out.grid, tile_size, halo)
    if out.clipped:
        tiles = clip_tiles(tiles, out.window[:2], out.window[2:])
    return tiles


def scaled_geotransform(gt: Sequence[float] | None, sx: float, sy: float) -> tuple[float, ...] | None:
    """The input's geotransform on the output grid (see the module docstring)."""
    if gt is None:
        return None
    return (gt[0], gt[1] / sx, gt[2] / sy, gt[3], gt[4] / sx, gt[5] / sy)


def extent_window(info: RasterInfo, extent: Sequence[float] | None,
                  extent_crs: str | None = None) -> tuple[int, int, int, int] | None:
    """LR rows [r0, r1) x cols [c0, c1) of an area of interest, snapped outward to whole input pixels
    and clipped to the raster; None without an extent. Refuses what cannot be honoured."""
    if extent is None:
        return None
    try:
        xmin, ymin, xmax, ymax = (float(v) for v in extent)
    except (TypeError, ValueError):
        raise MlinError(f"extent must be four numbers xmin,ymin,xmax,ymax, got {extent!r}.") from None
    if not (xmin < xmax and ymin < ymax):
        raise MlinError(f"extent {extent!r} is empty: it needs xmin < xmax and ymin < ymax.")
    gt = info.geotransform
    if gt is None:
        raise MlinError("an extent needs a georeferenced raster (a geotransform); this one has none.")
    if gt[2] != 0 or gt[4] != 0:
        raise MlinError("an extent on a rotated raster is not supported; warp it north-up first (gdalwarp).")
    if extent_crs:
        xmin, ymin, xmax, ymax = _transform_extent((xmin, ymin, xmax, ymax), extent_crs, info.projection)
    cols = sorted(((xmin - gt[0]) / gt[1], (xmax - gt[0]) / gt[1]))
    rows = sorted(((ymax - gt[3]) / gt[5], (ymin - gt[3]) / gt[5]))
    c0, c1 = max(0, math.floor(cols[0] + 1e-9)), min(info.width, math.ceil(cols[1] - 1e-9))
    r0, r1 = max(0, math.floor(rows[0] + 1e-9)), min(info.height, math.ceil(rows[1] - 1e-9))
    if c1 <= c0 or r1 <= r0:
        raise MlinError(f"extent {xmin:g},{ymin:g},{xmax:g},{ymax:g} does not overlap the raster "
                        f"({info.width} x {info.height} px); give it in the raster's CRS or set its CRS.")
    return r0, r1, c0, c1


def _transform_extent(extent: tuple[float, float, float, float], source: str, target_wkt: str) -> tuple[float, ...]:
    from osgeo import osr

    src, dst = osr.SpatialReference(), osr.SpatialReference()
    if src.SetFromUserInput(source) != 0:
        raise MlinError(f"unknown CRS {source!r} for the extent; use e.g. EPSG:4326.")
    if not target_wkt:
        raise MlinError("the raster has no CRS, so an extent in another CRS cannot be placed on it.")
    dst.ImportFromWkt(target_wkt)
    for ref in (src, dst):
        ref.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    tr = osr.CoordinateTransformation(src, dst)
    xmin, ymin, xmax, ymax = extent
    corners = [tr.TransformPoint(x, y)[:2] for x in (xmin, xmax) for y in (ymin, ymax)]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    return min(xs), min(ys), max(xs), max(ys)


def plan_run(request: SuperResolveRequest, src: gdal.Dataset,
             make_engine: Callable[[str | os.PathLike | None], Engine]) -> tuple[RunPlan, Engine]:
    """Validate a request against its raster and model and plan the whole run (raises MlinError).

    The cheap checks (paths, bands, options) come first; the model is loaded (``make_engine(spec)``)
    only when they pass, so a typo is reported at once, not after a model load. ``auto`` (or no model,
    when the aware model is installed) is resolved here to that model with ONE code for the whole raster
    (core/auto.py), carried in the engine spec so cluster workers run the same weights."""
    scale = check_scale(request.scale)
    in_path = Path(request.input_path)
    info = raster_io.describe(src, request.input_path)
    out_path = check_output_path(request.output_path, "output", [in_path])
    weights_path = None
    if request.weights_map_path:
        weights_path = check_output_path(request.weights_map_path, "weights map", [in_path, out_path])
    bands = raster_io.plan_bands(info, request.bands, request.all_bands)
    tile_size = check_tile_size(request.tile_size)
    check_ensemble(request.ensemble)
    compression = raster_io.check_compression(request.compression)
    lr_window = extent_window(info, request.extent, request.extent_crs)
    stats = compute_stats(src, info, bands)
    spec, route, input_code = request.model, "", None
    check_looks(request.input_looks)
    aware = aware_folder(spec)
    if aware is not None:  # one code for the whole raster, whatever window is computed (core/aware.py)
        looks = decide_input_looks(aware, request.input_looks, src, info, bands, stats)
        spec, input_code = code_spec(str(aware), looks.code), looks.code
        route = f"{AUTO_MODEL if wants_auto(request.model) else aware.name} -> {aware.name} (input looks: {looks.describe()})"
    elif request.input_looks not in (None, "", "auto"):
        raise MlinError(f"--input-looks needs a degradation-aware model ({AWARE_MODEL} or auto); "
                        f"{request.model} mixes no weights. Leave it out, or choose auto.")
    elif wants_auto(spec):  # auto without the aware model installed: refused with what to do
        raise MlinError(f"model '{AUTO_MODEL}' needs {AWARE_MODEL}; choose a model by name.")
    engine = make_engine(spec)
    warnings = check_scale_for_model(scale, engine.card)
    if weights_path is not None and not engine.has_weights:
        raise MlinError(f"model {engine.card.name} does not output mixing weights, so no weights map can be "
                        "written; leave the weights map out.")

    out = output_window(info, scale, lr_window)  # refuses outputs too large to make
    (grid_h, grid_w), window = out.grid, out.window
    sy, sx = grid_h / info.height, grid_w / info.width
    out_h, out_w = out.size
    needed = estimate_bytes(out_w, out_h, len(bands.output_bands), info.dtype.itemsize) * (2 if request.cog else 1)
    if weights_path is not None and weights_path.parent.resolve() == out_path.parent.resolve():
        needed += estimate_bytes(out_w, out_h, 1, 4)
    check_free_space(out_path.parent, needed, f"output ({out_w} x {out_h} px)")
    if weights_path is not None and weights_path.parent.resolve() != out_path.parent.resolve():
        check_free_space(weights_path.parent, estimate_bytes(out_w, out_h, 1, 4), "weights map")

    nodata = output_nodata(info, bands)
    masked = any(not (f & gdal.GMF_ALL_VALID) for f in (info.mask_flags[b - 1] for b in bands.data_bands)) \
        or info.dtype.is_float
    per_dataset_mask = bands.alpha is None and all(v is None for v in nodata) and any(
        (info.mask_flags[b - 1] & gdal.GMF_PER_DATASET) and not (info.mask_flags[b - 1] & gdal.GMF_ALPHA)
        for b in bands.data_bands)
    tile_size = tile_size or default_tile(engine.provider, scale)
    reach = None
    halo = engine.halo
    if request.fidelity:  # a tile's solve needs `reach` more inputs, whose outputs need 1 more LR pixel
        reach = (fidelity.reach(info.height, grid_h), fidelity.reach(info.width, grid_w))
        halo += max(reach) + 1
    tiles = window_tiles(info, out, tile_size, halo)
    gt = scaled_geotransform(info.geotransform, sx, sy)
    if gt is not None and lr_window is not None:  # the window's origin on the whole output grid
        r0, c0 = window[0], window[2]
        gt = (gt[0] + c0 * gt[1] + r0 * gt[2], gt[1], gt[2], gt[3] + c0 * gt[4] + r0 * gt[5], gt[4], gt[5])
    plan = RunPlan(input_path=in_path, output_path=out_path, weights_path=weights_path, scale=scale, info=info,
                   bands=bands, out_size=(grid_h, grid_w), window=window, scale_xy=(sx, sy),
                   geotransform=gt, nodata=tuple(nodata),
                   masked=masked, per_dataset_mask=per_dataset_mask, stats=stats, tile_size=tile_size,
                   tiles=tuple(tiles), ensemble=int(request.ensemble), cog=bool(request.cog), compression=compression,
                   warnings=tuple(warnings), route=route, fidelity_reach=reach, input_code=input_code)
    return plan, engine


