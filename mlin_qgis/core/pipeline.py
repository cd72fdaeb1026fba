"""The `sr` pipeline: super-resolve a georeferenced raster into a GeoTIFF, tile by tile.

Used by the CLI (`python -m mlin_qgis sr`), the Processing algorithm and the zoom dialog. Steps:
validate the request (input, output, scale, model card, disk space), compute band statistics once
(see normalise.py), then for each halo tile (see tiling.py) read the LR window, run the model, map
back to the input's data type, re-apply nodata/alpha/mask at the output grid (nearest) and write
the output window. The output goes to a hidden temporary file beside the target and is renamed
only on success; any failure or cancel removes it.

Output georeferencing: the input's geotransform with pixel size and rotation terms divided by the
effective scale per axis (``sx = W_out / W``, ``sy = H_out / H``: ``gt[1]/sx, gt[2]/sy, gt[4]/sx,
gt[5]/sy``, origin unchanged), so the output covers exactly the input's footprint; same CRS.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from osgeo import gdal

from . import fidelity, raster_io
from .auto import aware_folder, decide_input_looks, timing_model, wants_auto
from .aware import CODE_NAMES, InputLooks, check_looks, code_spec
from .card import ModelCard
from .engine import CPU, CUDA, Engine, check_ensemble, cuda_offered, open_engine
from .errors import MlinCancelled, MlinError
from .fidelity_report import FidelityMeter, FidelityReport
from .limits import output_grid
from .models import AUTO_MODEL, AWARE_MODEL, decoder_file, resolve_model, spec_variant
from .normalise import BandStats, StatsConfig, avoid_value, band_stats, dtype_info, from_unit, to_unit
from .raster_io import BandPlan, RasterInfo
from .tiling import Tile, clip_tiles, halo_for, nearest_index, out_range, plan_tiles

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]

# Size estimate: uncompressed bytes divided by this factor. Measured: the official LIIF model's x4
# output of a 100x100 OSBS_029 crop (uint8 RGB, ZSTD + predictor 2) compresses 1.38x; smoother
# outputs (larger scales) compress more. 1.25 over-estimates the size on purpose, so that the
# free-space check refuses a run that would fill the disk rather than letting it fail half-way.
COMPRESSION_FACTOR = 1.25
# Fixed overhead per file (headers, tile index) added to the estimate.
FILE_OVERHEAD_BYTES = 1 << 20
# Output megapixels per second per band group, used by estimate() until a run in this process has
# measured it (see measured_throughput). CPU: the official LIIF model (EDSR-baseline + 256-wide MLP,
# local ensemble) measured 0.009 Mpx/s at x4 on 2 shared cores (the decoder is ~75 % of the time);
# a free 8-core desktop is several times faster, so this errs long. CUDA: not measured yet (a guess).
DEFAULT_MPX_PER_S = {CPU: 0.01, CUDA: 5.0}
# Default LR tile core per provider; shrunk at large scales so one output window stays ~2048 px.
DEFAULT_TILE = {CPU: 256, CUDA: 512}
MAX_OUT_WINDOW = 2048

# Write the output in whole rows of GeoTIFF blocks, each flushed once complete (TileWriter, RowBands):
# GDAL's block cache otherwise holds written blocks until the file is closed, so peak memory grew with
# the output (docs/PERFORMANCE.md, "Memory"); the files are byte-for-byte the same either way
# (tests/test_engine_pipeline.py).
FLUSH_EACH_TILE_ROW = True

_measured: dict[tuple[str, str], float] = {}
_FLOAT32 = dtype_info(gdal.GDT_Float32)


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
    compression: str = raster_io.DEFAULT_COMPRESSION  # DEFLATE, ZSTD, LZW or NONE
    # Area of interest (xmin, ymin, xmax, ymax) in the raster's CRS (or in extent_crs, e.g. "EPSG:4326"):
    # snapped outward to input pixels; the halo is read from outside it where the raster has pixels.
    extent: Sequence[float] | None = None
    extent_crs: str | None = None
    precision: str = "fp32"  # int8: the model's quantised decoder (opt-in; its measured cost is in the docs)
    fidelity: bool = False  # correct the output so that it averages back to the input (core/fidelity.py)
    input_looks: str = "auto"  # a degradation-aware model's code: estimated, or named (core/aware.py LOOKS)


@dataclass
class SuperResolveResult:
    output_path: Path
    provider: str
    width: int
    height: int
    scale_x: float
    scale_y: float
    seconds: float
    mpx_per_s: float
    warnings: list[str] = field(default_factory=list)
    weights_map_path: Path | None = None
    model: str = ""
    tiles: int = 0
    route: str = ""  # what `auto` picked and why
    fidelity: FidelityReport | None = None  # area average of the output vs the input (every output)


@dataclass
class Estimate:
    """Output size in pixels, estimated bytes on disk and estimated seconds (for the dialog)."""

    width: int
    height: int
    bytes: int
    seconds: float
    basis: str = ""  # where the seconds come from, in words


# -- validation ---------------------------------------------------------------------------------
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


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def check_output_path(path: str | os.PathLike, what: str, forbidden: Sequence[Path]) -> Path:
    """A writable GeoTIFF path in an existing folder, different from the ``forbidden`` files."""
    out = Path(path).expanduser()
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise MlinError(f"{what} {out} must be a GeoTIFF path ending in .tif or .tiff.")
    for other in forbidden:
        if _same_file(out, other):
            raise MlinError(f"{what} {out} is the same file as {other}; choose another output path "
                            "(the input is never overwritten).")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.exists():
        raise MlinError(f"the folder {folder} of the {what} does not exist; create it or choose another folder.")
    if not folder.is_dir():
        raise MlinError(f"{folder} is not a folder, so {out} cannot be written; choose another path.")
    if out.is_dir():
        raise MlinError(f"{what} {out} is a folder; give a file name ending in .tif.")
    probe = folder / f".{out.name}.mlin-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(probe, "wb"):
            pass
    except OSError as exc:
        raise MlinError(f"the folder {folder} is not writable ({exc.strerror or exc}); choose another folder.") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    return out


def estimate_bytes(width: int, height: int, bands: int, itemsize: int) -> int:
    """Bytes on disk of a compressed GeoTIFF, conservatively (see COMPRESSION_FACTOR)."""
    return int(width * height * bands * itemsize / COMPRESSION_FACTOR) + FILE_OVERHEAD_BYTES


def check_free_space(folder: Path, needed: int, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise MlinError(f"the {what} needs about {needed / 1e9:.2f} GB but only {free / 1e9:.2f} GB are free "
                        f"in {folder}; free space, choose another folder, a smaller scale or a smaller region.")


# -- statistics -----------------------------------------------------------------------------------
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


# -- the run ------------------------------------------------------------------------------------
def _temp_path(target: Path) -> Path:
    return target.with_name(f".{target.stem}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}{target.suffix}")


def _output_nodata(info: RasterInfo, plan: BandPlan) -> list[float | None]:
    """Nodata value of each output data band: its own; else the first chosen band's (so every band
    of a masked pixel reads as nodata); None when no chosen band has one."""
    own = [info.nodata[b - 1] for b in plan.data_bands]
    first = next((v for v in own if v is not None), None)
    return [v if v is not None else first for v in own]


def _invalid_fill(nodata: float | None, info: RasterInfo) -> float:
    if nodata is not None:
        return nodata
    return float("nan") if info.dtype.is_float else 0.0


def _scaled_geotransform(gt: Sequence[float] | None, sx: float, sy: float) -> tuple[float, ...] | None:
    if gt is None:
        return None
    return (gt[0], gt[1] / sx, gt[2] / sy, gt[3], gt[4] / sx, gt[5] / sy)


def _set_georeferencing(ds: gdal.Dataset, info: RasterInfo, gt: tuple[float, ...] | None,
                        sx: float, sy: float) -> None:
    """Geotransform + CRS; or, for GCP-georeferenced inputs, the GCPs moved to the output grid
    (pixel/line multiplied by the effective scale); nothing for plain images."""
    if gt is not None:
        ds.SetGeoTransform(gt)
        if info.projection:
            ds.SetProjection(info.projection)
    elif info.gcps:
        gcps = [gdal.GCP(g.GCPX, g.GCPY, g.GCPZ, g.GCPPixel * sx, g.GCPLine * sy, g.Info, g.Id)
                for g in info.gcps]
        ds.SetGCPs(gcps, info.gcp_projection)


def _default_tile(provider: str, scale: float) -> int:
    return int(max(32, min(DEFAULT_TILE.get(provider, 256), MAX_OUT_WINDOW // math.ceil(scale))))


def _prepare_output(path: Path, info: RasterInfo, plan: BandPlan, size: tuple[int, int],
                    gt: tuple[float, ...] | None, nodata: list[float | None], per_dataset_mask: bool,
                    card: ModelCard, scale: float, compress: str = raster_io.DEFAULT_COMPRESSION,
                    route: str = "", input_code: Sequence[float] | None = None) -> gdal.Dataset:
    out_h, out_w = size
    groups_rgb = len(plan.groups) == 1 and len(plan.groups[0]) == 3 and \
        [info.color_interp[b - 1] for b in plan.groups[0]] == list(raster_io.RGB_INTERP)
    options = raster_io.gtiff_options(info.dtype, rgb=groups_rgb, alpha=plan.alpha is not None, compress=compress)
    ds = raster_io.create_gtiff(path, out_w, out_h, len(plan.output_bands), info.dtype, options)
    _set_georeferencing(ds, info, gt, out_w / info.width, out_h / info.height)
    # an input made by mlin itself must not pass on its own MLIN_* record (e.g. an old MLIN_ROUTE)
    metadata = {k: v for k, v in info.metadata.items() if not k.startswith(("TIFFTAG_", "MLIN_"))}
    metadata.update({"MLIN_MODEL": f"{card.name} {card.version}", "MLIN_SCALE": f"{scale:g}",
                     "MLIN_SOURCE": Path(info.path).name})
    if route:  # `auto` picked the model: say so, and why (batch compares MLIN_MODEL_ASKED)
        metadata.update({"MLIN_MODEL_ASKED": AUTO_MODEL, "MLIN_ROUTE": route})
    if input_code is not None:  # the degradation-aware model's code, the weights it ran with
        metadata["MLIN_INPUT_CODE"] = " ".join(f"{n}={v:.4f}" for n, v in zip(CODE_NAMES, input_code))
    ds.SetMetadata(metadata)
    for i, src in enumerate(plan.output_bands):
        band = ds.GetRasterBand(i + 1)
        band.SetColorInterpretation(info.color_interp[src - 1])
        if info.descriptions[src - 1]:
            band.SetDescription(info.descriptions[src - 1])
        value = nodata[i] if i < len(nodata) else None
        if value is not None:
            band.SetNoDataValue(float(value))
        if info.offsets[src - 1] not in (None, 0.0):
            band.SetOffset(info.offsets[src - 1])
        if info.scales[src - 1] not in (None, 1.0):
            band.SetScale(info.scales[src - 1])
        if info.units[src - 1]:
            band.SetUnitType(info.units[src - 1])
    if per_dataset_mask:
        raster_io.create_internal_mask(ds)
    return ds


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

    grid_h, grid_w = output_grid((info.height, info.width), scale)  # refuses outputs too large to make
    sy, sx = grid_h / info.height, grid_w / info.width
    if lr_window is None:
        window = (0, grid_h, 0, grid_w)
    else:
        window = (*out_range(info.height, grid_h, lr_window[0], lr_window[1]),
                  *out_range(info.width, grid_w, lr_window[2], lr_window[3]))
    out_h, out_w = window[1] - window[0], window[3] - window[2]
    needed = estimate_bytes(out_w, out_h, len(bands.output_bands), info.dtype.itemsize) * (2 if request.cog else 1)
    if weights_path is not None and weights_path.parent.resolve() == out_path.parent.resolve():
        needed += estimate_bytes(out_w, out_h, 1, 4)
    check_free_space(out_path.parent, needed, f"output ({out_w} x {out_h} px)")
    if weights_path is not None and weights_path.parent.resolve() != out_path.parent.resolve():
        check_free_space(weights_path.parent, estimate_bytes(out_w, out_h, 1, 4), "weights map")

    nodata = _output_nodata(info, bands)
    masked = any(not (f & gdal.GMF_ALL_VALID) for f in (info.mask_flags[b - 1] for b in bands.data_bands)) \
        or info.dtype.is_float
    per_dataset_mask = bands.alpha is None and all(v is None for v in nodata) and any(
        (info.mask_flags[b - 1] & gdal.GMF_PER_DATASET) and not (info.mask_flags[b - 1] & gdal.GMF_ALPHA)
        for b in bands.data_bands)
    tile_size = tile_size or _default_tile(engine.provider, scale)
    reach = None
    halo = engine.halo
    if request.fidelity:  # a tile's solve needs `reach` more inputs, whose outputs need 1 more LR pixel
        reach = (fidelity.reach(info.height, grid_h), fidelity.reach(info.width, grid_w))
        halo += max(reach) + 1
    tiles = plan_tiles((info.height, info.width), (grid_h, grid_w), tile_size, halo)
    if lr_window is not None:
        tiles = clip_tiles(tiles, window[:2], window[2:])
    gt = _scaled_geotransform(info.geotransform, sx, sy)
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


class AtomicOutputs:
    """The output (and weights map) are written to hidden temporary files beside their targets and
    appear only on :meth:`commit` (after the optional COG translation); leaving the ``with`` block by
    any exception, cancel included, removes every temporary file and anything half-renamed."""

    def __init__(self, plan: RunPlan, card: ModelCard, src: gdal.Dataset | None = None) -> None:
        """``src``: the open input, for the fidelity report (else the meter opens it itself)."""
        self.plan = plan
        self.card = card
        self.meter = FidelityMeter(plan, src)  # fed by the writers; its report goes into the metadata
        self.fidelity: FidelityReport | None = None
        self.tmp_out = _temp_path(plan.output_path)
        self.tmp_weights = _temp_path(plan.weights_path) if plan.weights_path is not None else None
        self.tmp_cog: Path | None = None
        self.dst: gdal.Dataset | None = None
        self.wdst: gdal.Dataset | None = None
        self._renamed_weights = False

    def __enter__(self) -> "AtomicOutputs":
        plan = self.plan
        self.dst = _prepare_output(self.tmp_out, plan.info, plan.bands, plan.window_size, plan.geotransform,
                                   list(plan.nodata), plan.per_dataset_mask, self.card, plan.scale, plan.compression,
                                   plan.route, plan.input_code)
        if self.tmp_weights is not None:
            out_h, out_w = plan.window_size
            self.wdst = raster_io.create_gtiff(self.tmp_weights, out_w, out_h, 1, _FLOAT32,
                                               raster_io.gtiff_options(_FLOAT32, compress=plan.compression))
            _set_georeferencing(self.wdst, plan.info, plan.geotransform, *plan.scale_xy)
            wband = self.wdst.GetRasterBand(1)
            wband.SetNoDataValue(float("nan"))
            wband.SetDescription("max |weights - area_weights| (learnt mixing vs LIIF area weights)")
        return self

    def commit(self, progress: ProgressFn | None = None) -> None:
        """Close (flushing; disk-full errors surface here), translate to COG if asked, rename."""
        plan = self.plan
        if self.dst is not None:
            self.dst.FlushCache()  # pixels first, then the report's metadata: the same bytes however written
            try:
                self.fidelity = self.meter.finish(self.dst)
            except MlinError as exc:  # a report that cannot be made must not cost the output
                log.warning("the fidelity report could not be made: %s", exc)
            else:
                for key, value in self.fidelity.metadata().items():
                    self.dst.SetMetadataItem(key, value)
        raster_io.close(self.dst)
        self.dst = None
        if self.wdst is not None:
            raster_io.close(self.wdst)
            self.wdst = None
        final = self.tmp_out
        if plan.cog:
            if progress:
                progress(1.0, "writing a Cloud Optimized GeoTIFF")
            self.tmp_cog = _temp_path(plan.output_path)
            _translate_cog(self.tmp_out, self.tmp_cog, plan.info, plan.compression)
            raster_io.remove_raster_files(self.tmp_out)
            final = self.tmp_cog
        if self.tmp_weights is not None and plan.weights_path is not None:
            _rename(self.tmp_weights, plan.weights_path)
            self._renamed_weights = True
        _rename(final, plan.output_path)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            return
        if self._renamed_weights and self.plan.weights_path is not None:
            raster_io.remove_raster_files(self.plan.weights_path)
        self.dst = self.wdst = None
        for path in (self.tmp_out, self.tmp_weights, self.tmp_cog):
            if path is not None:
                raster_io.remove_raster_files(path)


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
            values[~out_valid] = _invalid_fill(plan.nodata[i], info)
    if plan.bands.alpha is not None:
        alpha = raster_io.read_bands(src, [plan.bands.alpha], window)[0]
        outputs.append(alpha[np.ix_(ny, nx)].astype(info.dtype.numpy_dtype))
    if deviation is not None and out_valid is not None:
        deviation = np.where(out_valid, deviation, np.float32(np.nan)).astype(np.float32)
    return TileResult(tile, np.stack(outputs), out_valid, deviation)


def write_mask(dst: gdal.Dataset, mask: np.ndarray, xoff: int, yoff: int) -> None:
    """Write a window of the output's per-dataset mask band (255 valid, 0 not)."""
    mband = dst.GetRasterBand(1).GetMaskBand()
    with raster_io.gdal_errors() as errors:
        mband.WriteArray(mask, xoff, yoff)
    if errors:
        raise MlinError(f"writing the output mask failed ({'; '.join(errors)}).")


class RowBands:
    """Full-width rows of one output, gathered until whole rows of its GeoTIFF blocks are complete,
    then written and flushed. Each block is thus written once and leaves GDAL's cache at once: memory
    stays flat (at most one block row plus one tile row is held here) and the file's bytes are exactly
    those of writing every window and closing (no block is compressed and appended twice)."""

    def __init__(self, write: Callable[[np.ndarray, int], None], bands: int, width: int, dtype: np.dtype,
                 block_rows: int = raster_io.BLOCK_SIZE) -> None:
        self.write, self.bands, self.width, self.dtype, self.block_rows = write, bands, width, dtype, block_rows
        self.top = 0  # first row not yet written
        self.buffer = np.zeros((bands, 0, width), dtype)

    def put(self, data: np.ndarray, row: int, col: int) -> None:
        rows_needed = row + data.shape[1] - self.top
        if rows_needed > self.buffer.shape[1]:
            grown = np.zeros((self.bands, rows_needed, self.width), self.dtype)
            grown[:, :self.buffer.shape[1]] = self.buffer
            self.buffer = grown
        self.buffer[:, row - self.top:row - self.top + data.shape[1], col:col + data.shape[2]] = data

    def complete_to(self, row: int | None) -> bool:
        """Rows above ``row`` are final (None: all): write the whole block rows among them."""
        end = self.top + self.buffer.shape[1] if row is None else (row // self.block_rows) * self.block_rows
        if end <= self.top:
            return False
        count = end - self.top
        self.write(np.ascontiguousarray(self.buffer[:, :count]), self.top)
        self.buffer = self.buffer[:, count:].copy()
        self.top = end
        return True


class TileWriter:
    """Writes computed tiles into the run's output (and weights map), mask band included.

    Tiles arrive row by row: call :meth:`end_row` when a row of tiles is done and :meth:`finish` at the
    end. With FLUSH_EACH_TILE_ROW (the default) windows go through :class:`RowBands`; without it they
    are written as they come and GDAL's cache keeps them until the file is closed."""

    def __init__(self, plan: RunPlan, dst: gdal.Dataset, wdst: gdal.Dataset | None,
                 origin: tuple[int, int] | None = None, meter: FidelityMeter | None = None) -> None:
        """``origin``: the (row, col) of ``dst``'s first pixel on the whole output grid (default: the
        run's window; a cluster block's part passes its own corner). ``meter`` sees the rows written."""
        self.plan, self.dst, self.wdst = plan, dst, wdst
        self.origin = (plan.window[0], plan.window[2]) if origin is None else origin
        self.bands: list[tuple[RowBands, str]] = []
        # without the row buffer, the meter gets its own (never a read-back: that would reorder the file)
        self.metered = None if FLUSH_EACH_TILE_ROW or meter is None else \
            RowBands(meter.feed, dst.RasterCount, dst.RasterXSize, plan.info.dtype.numpy_dtype)
        if FLUSH_EACH_TILE_ROW:
            width = dst.RasterXSize
            dtype = plan.info.dtype.numpy_dtype

            def write_values(a: np.ndarray, y: int) -> None:
                if meter is not None:
                    meter.feed(a, y)
                raster_io.write_window(dst, a, 0, y)

            self.values = RowBands(write_values, dst.RasterCount, width, dtype)
            self.bands.append((self.values, "values"))
            if plan.per_dataset_mask:
                # the lambdas hold the datasets, never self: a cycle would keep the file open past commit
                self.mask = RowBands(lambda a, y: write_mask(dst, a[0], 0, y), 1, width, np.dtype(np.uint8))
                self.bands.append((self.mask, "mask"))
            if wdst is not None:
                self.deviation = RowBands(lambda a, y: raster_io.write_window(wdst, a, 0, y), 1, width,
                                          np.dtype(np.float32))
                self.bands.append((self.deviation, "deviation"))

    def write(self, result: TileResult) -> None:
        r, c = result.tile.rows, result.tile.cols
        xoff, yoff = c.out_start - self.origin[1], r.out_start - self.origin[0]
        mask = None
        if self.plan.per_dataset_mask:
            mask = np.full((r.out_size, c.out_size), 255, np.uint8) if result.valid is None else \
                np.where(result.valid, 255, 0).astype(np.uint8)
        deviation = result.deviation if self.wdst is not None else None
        if not self.bands:
            if self.metered is not None:
                self.metered.put(result.values, yoff, xoff)
            raster_io.write_window(self.dst, result.values, xoff, yoff)
            if mask is not None:
                write_mask(self.dst, mask, xoff, yoff)
            if deviation is not None:
                raster_io.write_window(self.wdst, deviation[None], xoff, yoff)
            return
        self.values.put(result.values, yoff, xoff)
        if mask is not None:
            self.mask.put(mask[None], yoff, xoff)
        if deviation is not None:
            self.deviation.put(deviation[None].astype(np.float32), yoff, xoff)

    def end_row(self, next_row: int | None) -> None:
        """The row of tiles above output row ``next_row`` (whole grid; None: the last) is complete."""
        local = None if next_row is None else next_row - self.origin[0]
        if self.metered is not None:
            self.metered.complete_to(local)
        if not self.bands:
            return
        wrote = [rows.complete_to(local) for rows, _ in self.bands]
        if any(wrote):
            for ds in (self.dst, self.wdst):
                if ds is not None:
                    ds.FlushCache()

    def finish(self) -> None:
        self.end_row(None)


def superresolve(request: SuperResolveRequest, progress: ProgressFn | None = None,
                 is_cancelled: CancelFn | None = None) -> SuperResolveResult:
    """Run one super-resolution; see the module docstring. Raises MlinError (bad input, no space,
    bad model) or MlinCancelled, and never leaves a partial output behind."""
    start = time.perf_counter()
    check_scale(request.scale)
    src = raster_io.open_raster(request.input_path)
    plan, engine = plan_run(request, src, lambda spec: open_engine(spec, device=request.device,
                                                                   threads=request.threads,
                                                                   precision=request.precision))
    if plan.route:
        log.info("%s", plan.route)
    info, (out_h, out_w) = plan.info, plan.window_size
    log.info("%s: %d x %d -> %d x %d px (x%.4g / x%.4g), %d tile(s) of %d LR px, halo %d, bands %s, ensemble %d",
             plan.input_path.name, info.width, info.height, out_w, out_h, *plan.scale_xy, len(plan.tiles),
             plan.tile_size, engine.halo, list(plan.bands.data_bands), plan.ensemble)
    for band, st in plan.stats.items():
        log.info("band %d statistics: %s", band, st)

    def check_cancel() -> None:
        if is_cancelled is not None and is_cancelled():
            raise MlinCancelled("cancelled by the user; the partial output was removed.")

    with AtomicOutputs(plan, engine.card, src) as outputs:
        assert outputs.dst is not None
        writer = TileWriter(plan, outputs.dst, outputs.wdst, meter=outputs.meter)
        if progress:
            progress(0.0, f"{len(plan.tiles)} tiles, output {out_w} x {out_h} px on {engine.provider}")
        n = len(plan.tiles)
        for k, tile in enumerate(plan.tiles):
            check_cancel()
            if k and tile.rows.out_start != plan.tiles[k - 1].rows.out_start:
                writer.end_row(tile.rows.out_start)  # whole block rows leave memory: it stays flat

            def within_tile(fraction: float, k: int = k) -> None:  # after every decoder call
                check_cancel()
                if progress and fraction < 1.0:  # the tile's end is reported once, below
                    progress((k + fraction) / n, f"tile {k + 1}/{n}")

            writer.write(compute_tile(src, plan, engine, tile, want_deviation=outputs.wdst is not None,
                                      on_chunk=within_tile))
            if progress:
                progress((k + 1) / n, f"tile {k + 1}/{n}")
        check_cancel()
        writer.finish()
        del writer  # drop its dataset references, so that commit really closes the files
        outputs.commit(progress)
    seconds = time.perf_counter() - start
    mpx = out_w * out_h / 1e6
    passes = len(plan.bands.groups) * plan.ensemble
    _measured[(engine.model_spec, engine.provider)] = mpx * passes / max(seconds, 1e-9)
    sx, sy = plan.scale_xy
    return SuperResolveResult(output_path=plan.output_path, provider=engine.provider, width=out_w, height=out_h,
                              scale_x=sx, scale_y=sy, seconds=seconds, mpx_per_s=mpx / max(seconds, 1e-9),
                              warnings=list(plan.warnings), weights_map_path=plan.weights_path,
                              model=f"{engine.card.name} {engine.card.version}", tiles=len(plan.tiles),
                              route=plan.route, fidelity=outputs.fidelity)


def _translate_cog(src_path: Path, dst_path: Path, info: RasterInfo,
                   compress: str = raster_io.DEFAULT_COMPRESSION) -> None:
    with raster_io.gdal_errors() as errors:
        try:
            ds = gdal.Translate(str(dst_path), str(src_path), format="COG",
                                creationOptions=raster_io.cog_options(info.dtype, compress))
        except RuntimeError as exc:
            errors.append(str(exc))
            ds = None
        if ds is not None:
            ds.FlushCache()
            ds = None
    if errors or not dst_path.exists():
        raise MlinError(f"writing the Cloud Optimized GeoTIFF failed ({'; '.join(errors) or 'unknown error'}); "
                        "check the free space or write a plain GeoTIFF.")


def _rename(tmp: Path, target: Path) -> None:
    """Move a finished temporary file (and a side-car .aux.xml) onto its target."""
    try:
        raster_io.remove_raster_files(target) if target.exists() else None
        os.replace(tmp, target)
        for side in (".aux.xml", ".msk"):
            if Path(str(tmp) + side).exists():
                os.replace(Path(str(tmp) + side), Path(str(target) + side))
    except OSError as exc:
        raise MlinError(f"cannot move the result onto {target} ({exc.strerror or exc}); is it open elsewhere?") from None


def auto_decision(input_path: str | os.PathLike, bands: Sequence[int] | None = None, all_bands: bool = False,
                  input_looks: str = "auto") -> InputLooks:
    """How ``auto`` reads this raster (the code it will run with), without running anything else: the
    same windows, statistics and estimator as a run (scripts and the dialog report it)."""
    folder = aware_folder(AUTO_MODEL)
    if folder is None:
        raise MlinError(f"model '{AUTO_MODEL}' needs {AWARE_MODEL}; choose a model by name.")
    ds = raster_io.open_raster(input_path)
    info = raster_io.describe(ds, input_path)
    plan = raster_io.plan_bands(info, bands, all_bands)
    return decide_input_looks(folder, input_looks, ds, info, plan, compute_stats(ds, info, plan))


# -- estimates ----------------------------------------------------------------------------------
def measured_throughput(model: str | os.PathLike, provider: str) -> float | None:
    """Output Mpx/s (per band group) of the last run in this process with that model (its folder, or
    FOLDER@variant, FOLDER#code=...: what the engine calls its ``model_spec``) and provider."""
    return _measured.get((str(model), provider))


def estimate(input_path: str | os.PathLike, scale: float, model: str | os.PathLike | None = None,
             bands: Sequence[int] | None = None, all_bands: bool = False, ensemble: int = 1,
             device: str = "auto", tile_size: int | None = None, threads: int | None = None,
             extent: Sequence[float] | None = None, extent_crs: str | None = None) -> Estimate:
    """Output size, bytes on disk (see COMPRESSION_FACTOR) and seconds, without running the job.

    Seconds come from the last real run in this process with the same model and provider when there
    is one, else from this machine's calibrated throughput (core/calibration.py: a tiny timed run,
    cached across sessions), else from DEFAULT_MPX_PER_S when no measurement is possible.
    A self-ensemble of 8 costs 8 passes."""
    from .calibration import throughput

    scale = check_scale(scale)
    passes = len(check_ensemble(ensemble))
    ds = raster_io.open_raster(input_path)
    info = raster_io.describe(ds, input_path)
    plan = raster_io.plan_bands(info, bands, all_bands)
    grid_h, grid_w = output_grid((info.height, info.width), scale)  # refuses outputs too large to make
    lr_window = extent_window(info, extent, extent_crs)
    if lr_window is None:
        out_h, out_w = grid_h, grid_w
    else:  # an area of interest: its part of the output grid (the halo's extra reads are ignored)
        rows = out_range(info.height, grid_h, lr_window[0], lr_window[1])
        cols = out_range(info.width, grid_w, lr_window[2], lr_window[3])
        out_h, out_w = rows[1] - rows[0], cols[1] - cols[0]
    size = estimate_bytes(out_w, out_h, len(plan.output_bands), info.dtype.itemsize)
    out_mpx = out_w * out_h / 1e6
    groups = len(plan.groups)
    timing = timing_model(model)
    model_dir = resolve_model(timing)
    variant = spec_variant(timing)
    timing_spec = str(model_dir) + (f"@{variant}" if variant else "")
    try:
        rate = throughput(model_dir, device, threads)
    except MlinError as exc:
        provider = CUDA if cuda_offered() and device != "cpu" else CPU
        seconds = out_mpx * groups * passes / DEFAULT_MPX_PER_S[provider]
        return Estimate(out_w, out_h, size, seconds, f"a built-in guess ({exc})")
    last = measured_throughput(timing_spec, rate.provider)
    if last:
        return Estimate(out_w, out_h, size, out_mpx * groups * passes / last,
                        f"the last run in this session ({last:.3g} Mpx/s)")
    halo = halo_for(ModelCard.from_onnx(model_dir / decoder_file(variant)).receptive_field)
    tiles = plan_tiles((info.height, info.width), (grid_h, grid_w),
                       check_tile_size(tile_size) or _default_tile(rate.provider, scale), halo)
    if lr_window is not None:
        tiles = clip_tiles(tiles, rows, cols)
    lr_read = sum(t.rows.read_size * t.cols.read_size for t in tiles)
    seconds = groups * rate.seconds(lr_read, out_w * out_h, passes)
    return Estimate(out_w, out_h, size, seconds,
                    f"a calibration run on this machine ({rate.mpx_per_s(scale):.3g} Mpx/s at x{scale:g})")
