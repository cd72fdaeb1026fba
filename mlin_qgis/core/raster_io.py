"""GDAL raster access for the pipeline: open and describe inputs, choose bands, read windows and
validity masks, create tiled compressed GeoTIFF outputs, and surface GDAL errors as MlinError.

GDAL's Python bindings may or may not have exceptions enabled (QGIS and other plugins decide), so
every call here works both ways: return values are checked and GDAL's error messages are collected
with a pushed error handler (which also keeps GDAL from printing to stderr).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from osgeo import gdal

from .errors import RasterError
from .normalise import DtypeInfo, dtype_info

BLOCK_SIZE = 256
RGB_INTERP = (gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand)


@contextmanager
def gdal_errors() -> Iterator[list[str]]:
    """Collect GDAL failure messages raised inside the block (and silence GDAL's own printing)."""
    messages: list[str] = []

    def handler(err_class: int, err_no: int, message: str) -> None:
        if err_class >= gdal.CE_Failure:
            messages.append(str(message).strip())

    gdal.PushErrorHandler(handler)
    try:
        yield messages
    finally:
        gdal.PopErrorHandler()


def _is_virtual(path: str) -> bool:
    """GDAL paths that are not plain files (/vsi..., DRIVER:...) skip the file-system checks."""
    return path.startswith("/vsi") or (":" in path and not os.path.splitdrive(path)[0] and not Path(path).exists())


def open_raster(path: str | os.PathLike) -> gdal.Dataset:
    """Open an input raster read-only; MlinError when it is missing, unreadable or not a raster."""
    text = str(path)
    if not _is_virtual(text):
        p = Path(text)
        if not p.exists():
            raise RasterError(f"input raster {p} does not exist; check the path.")
        if p.is_dir():
            raise RasterError(f"input {p} is a folder, not a raster file; choose a GeoTIFF or another raster.")
        if not os.access(p, os.R_OK):
            raise RasterError(f"input raster {p} cannot be read (permission denied); check its permissions.")
    with gdal_errors() as errors:
        try:
            ds = gdal.OpenEx(text, gdal.OF_RASTER | gdal.OF_READONLY)
        except RuntimeError as exc:
            errors.append(str(exc))
            ds = None
    if ds is None:
        detail = f" ({errors[-1]})" if errors else ""
        raise RasterError(f"{text} is not a raster GDAL can read{detail}; choose a GeoTIFF or another raster.")
    if ds.RasterCount < 1 or ds.RasterXSize < 1 or ds.RasterYSize < 1:
        raise RasterError(f"{text} has no raster bands; choose a raster with 1 to N bands.")
    return ds


@dataclass
class RasterInfo:
    """What the pipeline needs to know about an input raster (bands are 1-based)."""

    path: str
    width: int
    height: int
    band_count: int
    dtype: DtypeInfo
    geotransform: tuple[float, ...] | None
    projection: str
    nodata: list[float | None]
    color_interp: list[int]
    descriptions: list[str]
    mask_flags: list[int]
    offsets: list[float | None] = field(default_factory=list)
    scales: list[float | None] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    gcps: tuple = ()
    gcp_projection: str = ""

    @property
    def alpha_band(self) -> int | None:
        """The first band whose colour interpretation is Alpha, if any."""
        for i, ci in enumerate(self.color_interp):
            if ci == gdal.GCI_AlphaBand:
                return i + 1
        return None


def describe(ds: gdal.Dataset, path: str | os.PathLike) -> RasterInfo:
    """Read size, type, georeferencing and per-band properties of an open raster."""
    bands = [ds.GetRasterBand(i + 1) for i in range(ds.RasterCount)]
    return RasterInfo(
        path=str(path), width=ds.RasterXSize, height=ds.RasterYSize, band_count=ds.RasterCount,
        dtype=dtype_info(bands[0].DataType),
        geotransform=_geotransform(ds),
        projection=ds.GetProjection() or "",
        nodata=[b.GetNoDataValue() for b in bands],
        color_interp=[b.GetColorInterpretation() for b in bands],
        descriptions=[b.GetDescription() for b in bands],
        mask_flags=[b.GetMaskFlags() for b in bands],
        offsets=[b.GetOffset() for b in bands], scales=[b.GetScale() for b in bands],
        units=[b.GetUnitType() or "" for b in bands],
        metadata=dict(ds.GetMetadata() or {}),
        gcps=tuple(ds.GetGCPs() or ()), gcp_projection=ds.GetGCPProjection() or "",
    )


def _geotransform(ds: gdal.Dataset) -> tuple[float, ...] | None:
    """The geotransform, or None for rasters without one (plain images, GCP-only rasters)."""
    gt = ds.GetGeoTransform(can_return_null=True)
    return tuple(gt) if gt else None


@dataclass
class BandPlan:
    """Which source bands go through the model, grouped per model run, and the alpha band carried.

    A group of 3 bands is fed as (R, G, B); a group of 1 band is a grey band, replicated to RGB and
    averaged back to one band. Output bands are written in group order, then the alpha band.
    """

    groups: list[tuple[int, ...]]
    alpha: int | None = None

    @property
    def data_bands(self) -> list[int]:
        return [b for g in self.groups for b in g]

    @property
    def output_bands(self) -> list[int]:
        """Source band of each output band, in output order (alpha last)."""
        return self.data_bands + ([self.alpha] if self.alpha else [])


def plan_bands(info: RasterInfo, bands: Sequence[int] | None = None, all_bands: bool = False) -> BandPlan:
    """Choose the bands to process.

    * default: the bands whose colour interpretation is Red, Green, Blue; else the first three
      non-alpha bands; a 1-band raster is one grey group; a 2-band raster (two data bands) is two
      grey groups (each band replicated to RGB on its own, so bands never mix).
    * ``bands``: 3 band numbers (1-based) fed as R, G, B, or 1 band processed as grey.
    * ``all_bands``: every non-alpha band, in groups of three in band order; 1 or 2 bands left
      over are processed as grey bands one by one.
    Bands not chosen are not written. An alpha band is never fed to the model: it is carried
    (nearest-upsampled) as the last output band.
    """
    alpha = info.alpha_band
    data = [b for b in range(1, info.band_count + 1) if b != alpha]
    palette = [i + 1 for i, ci in enumerate(info.color_interp) if ci == gdal.GCI_PaletteIndex]
    if palette:
        raise RasterError(f"band(s) {palette} of {info.path} hold colour-table (palette) indices, which cannot be "
                        "interpolated; expand the palette to RGB first (gdal_translate -expand rgb, or QGIS "
                        "Raster > Conversion > Translate with 'expand' = rgb).")
    if bands is not None and all_bands:
        raise RasterError("choose either a band list or 'all bands', not both.")
    if bands is not None:
        try:
            chosen = [int(b) for b in bands]
        except (TypeError, ValueError):
            raise RasterError(f"bands must be band numbers such as 1,2,3; got {bands!r}.") from None
        if len(chosen) not in (1, 3):
            raise RasterError(f"give 3 band numbers (fed as red, green, blue) or 1 (grey); got {len(chosen)}.")
        bad = [b for b in chosen if not 1 <= b <= info.band_count]
        if bad:
            raise RasterError(f"band(s) {bad} do not exist: the raster has bands 1 to {info.band_count}.")
        if len(set(chosen)) != len(chosen):
            raise RasterError(f"bands {chosen} repeat a band; choose distinct bands.")
        if alpha in chosen:
            raise RasterError(f"band {alpha} is the alpha band: it is carried to the output, not "
                            "super-resolved; choose colour bands.")
        return BandPlan([tuple(chosen)], alpha)
    if not data:
        raise RasterError(f"{info.path} has only an alpha band; there is nothing to super-resolve.")
    if all_bands:
        groups = [tuple(data[i:i + 3]) for i in range(0, len(data) - len(data) % 3, 3)]
        groups += [(b,) for b in data[len(data) - len(data) % 3:]]
        return BandPlan(groups, alpha)
    interp = {ci: i + 1 for i, ci in reversed(list(enumerate(info.color_interp)))}
    if all(ci in interp for ci in RGB_INTERP):
        return BandPlan([tuple(interp[ci] for ci in RGB_INTERP)], alpha)
    if len(data) >= 3:
        return BandPlan([tuple(data[:3])], alpha)
    return BandPlan([(b,) for b in data], alpha)


def read_bands(ds: gdal.Dataset, bands: Sequence[int], window: tuple[int, int, int, int],
               buf_size: tuple[int, int] | None = None) -> np.ndarray:
    """Values (len(bands), ysize, xsize) of a window (xoff, yoff, xsize, ysize), native type;
    ``buf_size`` (bw, bh) reads a decimated version (nearest)."""
    xoff, yoff, xs, ys = window
    bw, bh = buf_size or (xs, ys)
    with gdal_errors() as errors:
        try:
            arr = ds.ReadAsArray(xoff, yoff, xs, ys, buf_xsize=bw, buf_ysize=bh, band_list=list(bands))
        except RuntimeError as exc:
            errors.append(str(exc))
            arr = None
    if arr is None:
        raise RasterError(f"reading window {window} of {ds.GetDescription()} failed "
                        f"({'; '.join(errors) or 'unknown GDAL error'}); the file may be damaged.")
    return arr.reshape(len(bands), bh, bw)


def read_valid(ds: gdal.Dataset, bands: Sequence[int], window: tuple[int, int, int, int],
               buf_size: tuple[int, int] | None = None) -> np.ndarray | None:
    """Validity (True = valid) of a window, combined over ``bands`` (a pixel is valid only when it
    is valid in every band) from GDAL's mask bands (nodata, alpha, per-dataset masks);
    None when GDAL says every pixel is valid."""
    xoff, yoff, xs, ys = window
    bw, bh = buf_size or (xs, ys)
    valid: np.ndarray | None = None
    seen_per_dataset = False
    for b in bands:
        band = ds.GetRasterBand(int(b))
        flags = band.GetMaskFlags()
        if flags & gdal.GMF_ALL_VALID:
            continue
        if flags & gdal.GMF_PER_DATASET:
            if seen_per_dataset:
                continue
            seen_per_dataset = True
        with gdal_errors() as errors:
            try:
                mask = band.GetMaskBand().ReadAsArray(xoff, yoff, xs, ys, buf_xsize=bw, buf_ysize=bh)
            except RuntimeError as exc:
                errors.append(str(exc))
                mask = None
        if mask is None:
            raise RasterError(f"reading the mask of band {b} failed ({'; '.join(errors)}); the file may be damaged.")
        valid = (mask > 0) if valid is None else (valid & (mask > 0))
    return valid


COMPRESSIONS = ("DEFLATE", "ZSTD", "LZW", "NONE")
DEFAULT_COMPRESSION = "DEFLATE"  # every GIS tool reads it; ZSTD is smaller and faster but not everywhere


def check_compression(name: str) -> str:
    """A GeoTIFF compression this GDAL can write (ZSTD only where the driver has it)."""
    value = str(name).upper()
    if value not in COMPRESSIONS:
        raise RasterError(f"unknown compression {name!r}; choose one of {', '.join(COMPRESSIONS)} "
                          f"(default {DEFAULT_COMPRESSION}, which every GIS tool reads).")
    options = gdal.GetDriverByName("GTiff").GetMetadataItem("DMD_CREATIONOPTIONLIST") or ""
    if value != "NONE" and value not in options:
        raise RasterError(f"this GDAL cannot write {value}-compressed GeoTIFFs; use {DEFAULT_COMPRESSION}.")
    return value


def gtiff_options(dtype: DtypeInfo, rgb: bool = False, alpha: bool = False,
                  compress: str = DEFAULT_COMPRESSION) -> list[str]:
    """Creation options of every GeoTIFF the pipeline writes: tiled, compressed with a predictor,
    BigTIFF when needed, RGB photometric when the first 3 bands are R, G, B."""
    options = ["TILED=YES", f"BLOCKXSIZE={BLOCK_SIZE}", f"BLOCKYSIZE={BLOCK_SIZE}",
               f"COMPRESS={check_compression(compress)}", f"PREDICTOR={3 if dtype.is_float else 2}",
               "BIGTIFF=IF_SAFER", "INTERLEAVE=PIXEL"]
    if rgb:
        options.append("PHOTOMETRIC=RGB")
    if alpha:
        options.append("ALPHA=YES")
    return options


def cog_options(dtype: DtypeInfo, compress: str = DEFAULT_COMPRESSION) -> list[str]:
    return [f"COMPRESS={check_compression(compress)}", "PREDICTOR=YES", "BIGTIFF=IF_SAFER", f"BLOCKSIZE={BLOCK_SIZE}"]


def create_gtiff(path: str | os.PathLike, width: int, height: int, band_count: int, dtype: DtypeInfo,
                 options: Sequence[str]) -> gdal.Dataset:
    """Create a GeoTIFF for writing; MlinError with GDAL's reason when it cannot."""
    with gdal_errors() as errors:
        try:
            ds = gdal.GetDriverByName("GTiff").Create(str(path), int(width), int(height), int(band_count),
                                                      dtype.gdal_type, list(options))
        except RuntimeError as exc:
            errors.append(str(exc))
            ds = None
    if ds is None:
        raise RasterError(f"cannot create {path} ({'; '.join(errors) or 'unknown GDAL error'}); check the "
                        "folder, its permissions and the free space.")
    return ds


def create_internal_mask(ds: gdal.Dataset) -> None:
    """A per-dataset mask band inside the GeoTIFF (GDAL < 3.9 defaults to a side-car .msk); the
    option is set thread-locally, so nothing global changes."""
    previous = gdal.GetThreadLocalConfigOption("GDAL_TIFF_INTERNAL_MASK", None)
    gdal.SetThreadLocalConfigOption("GDAL_TIFF_INTERNAL_MASK", "YES")
    try:
        ds.CreateMaskBand(gdal.GMF_PER_DATASET)
    finally:
        gdal.SetThreadLocalConfigOption("GDAL_TIFF_INTERNAL_MASK", previous)


def write_window(ds: gdal.Dataset, data: np.ndarray, xoff: int, yoff: int) -> None:
    """Write (bands, ysize, xsize) at (xoff, yoff) to all bands at once (pixel-interleaved files are
    then written block by block without read-modify-write of other bands)."""
    data = np.ascontiguousarray(data)
    nb, ys, xs = data.shape
    with gdal_errors() as errors:
        try:
            err = ds.WriteRaster(int(xoff), int(yoff), int(xs), int(ys), data.tobytes(), xs, ys,
                                 ds.GetRasterBand(1).DataType, list(range(1, nb + 1)))
        except RuntimeError as exc:
            errors.append(str(exc))
            err = gdal.CE_Failure
    if err != gdal.CE_None or errors:
        raise RasterError(f"writing {ds.GetDescription()} failed ({'; '.join(errors) or 'unknown GDAL error'}); "
                        "check the free space.")


def close(ds: gdal.Dataset | None) -> None:
    """Flush and close, turning write errors at flush time (e.g. disk full) into MlinError."""
    if ds is None:
        return
    name = ds.GetDescription()
    with gdal_errors() as errors:
        try:
            ds.FlushCache()
        except RuntimeError as exc:
            errors.append(str(exc))
        ds = None
    if errors:
        raise RasterError(f"finishing {name} failed ({'; '.join(errors)}); check the free space.")


def remove_raster_files(path: str | os.PathLike) -> None:
    """Delete a (partial) raster and its side-car files, ignoring what does not exist."""
    for p in (Path(path), Path(str(path) + ".aux.xml"), Path(str(path) + ".msk"), Path(str(path) + ".ovr")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            pass
