"""Band statistics and data-type mapping between raster values and the model's [0, 1] units.

* ``Byte`` rasters are mapped as ``value / 255`` and back (the models were trained on 8-bit images).
* Other types (UInt16, Int16, UInt32, Int32, Float32, Float64) are stretched per band with robust
  statistics: the ``low``-th and ``high``-th percentiles (2 and 98 by default) of the VALID pixels,
  computed ONCE per raster from a decimated read (never per tile, so tiles cannot disagree), map to
  0 and 1. Values outside that range are passed through linearly (not clipped before the model), so
  bright outliers are kept rather than flattened; the result is mapped back with the same linear
  map, rounded for integer types and clipped to the type's range. Floats stay floats.
* Invalid pixels (nodata, alpha 0, masked, NaN) are filled with the band's valid mean before they
  reach the model, so they do not ring into their valid neighbours; they are re-masked afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from osgeo import gdal

from .errors import MlinError


@dataclass
class StatsConfig:
    """Robust stretch settings: percentiles of valid pixels and the decimated read's longest side."""

    low_percentile: float = 2.0
    high_percentile: float = 98.0
    sample_side: int = 1024


@dataclass(frozen=True)
class DtypeInfo:
    """A GDAL data type and what the mapping needs to know about it."""

    gdal_type: int
    numpy_dtype: np.dtype
    name: str
    is_float: bool
    min_value: float
    max_value: float

    @property
    def is_byte(self) -> bool:
        return self.gdal_type == gdal.GDT_Byte

    @property
    def itemsize(self) -> int:
        return self.numpy_dtype.itemsize


_SUPPORTED = {
    gdal.GDT_Byte: np.uint8, gdal.GDT_UInt16: np.uint16, gdal.GDT_Int16: np.int16,
    gdal.GDT_UInt32: np.uint32, gdal.GDT_Int32: np.int32,
    gdal.GDT_Float32: np.float32, gdal.GDT_Float64: np.float64,
}
if hasattr(gdal, "GDT_Int8"):  # GDAL >= 3.7
    _SUPPORTED[gdal.GDT_Int8] = np.int8


def dtype_info(gdal_type: int) -> DtypeInfo:
    """DtypeInfo for a supported GDAL type; complex and other types raise an MlinError."""
    if gdal_type not in _SUPPORTED:
        name = gdal.GetDataTypeName(gdal_type)
        raise MlinError(f"raster data type {name} is not supported; convert the raster to Byte, UInt16, "
                        "Int16, UInt32, Int32, Float32 or Float64 first (e.g. gdal_translate -ot).")
    dt: Any = np.dtype(_SUPPORTED[gdal_type])
    limits: Any = np.finfo(dt) if dt.kind == "f" else np.iinfo(dt)
    lo, hi, is_float = float(limits.min), float(limits.max), dt.kind == "f"
    return DtypeInfo(gdal_type, dt, gdal.GetDataTypeName(gdal_type), is_float, lo, hi)


@dataclass(frozen=True)
class BandStats:
    """Linear map of one band: ``unit = (value - lo) / (hi - lo)``; ``fill`` replaces invalid pixels."""

    lo: float
    hi: float
    fill: float
    valid_count: int

    @property
    def span(self) -> float:
        return self.hi - self.lo


def band_stats(values: np.ndarray, valid: np.ndarray | None, dtype: DtypeInfo,
               config: StatsConfig | None = None) -> BandStats:
    """Statistics of one band from a (decimated) sample; ``valid`` is a boolean mask or None."""
    config = config or StatsConfig()
    v = np.asarray(values, np.float64)
    ok = np.isfinite(v) if valid is None else (valid & np.isfinite(v))
    sample = v[ok]
    if sample.size == 0:
        return BandStats(0.0, 1.0, 0.0, 0)
    fill = float(sample.mean())
    if dtype.is_byte:
        return BandStats(0.0, 255.0, fill, int(sample.size))
    lo, hi = (float(x) for x in np.percentile(sample, [config.low_percentile, config.high_percentile]))
    if not hi > lo:  # constant band (or nearly): any positive span maps it to 0 and back exactly
        hi = lo + 1.0
    return BandStats(lo, hi, fill, int(sample.size))


def to_unit(raw: np.ndarray, stats: BandStats, valid: np.ndarray | None = None) -> np.ndarray:
    """Raw values of one band (h, w) -> float32 model units; invalid pixels get the band's fill."""
    x = np.asarray(raw, np.float64)
    if valid is not None:
        x = np.where(valid, x, stats.fill)
    x = np.where(np.isfinite(x), x, stats.fill)
    return ((x - stats.lo) / stats.span).astype(np.float32)


def from_unit(unit: np.ndarray, stats: BandStats, dtype: DtypeInfo) -> np.ndarray:
    """Model units -> raster values of ``dtype`` (Byte: clip to [0, 1] then x255; ints rounded and
    clipped to the type's range; floats kept as floats)."""
    y = np.asarray(unit, np.float64)
    if dtype.is_byte:
        return np.rint(np.clip(y, 0.0, 1.0) * 255.0).astype(np.uint8)
    v = y * stats.span + stats.lo
    if dtype.is_float:
        return np.clip(v, dtype.min_value, dtype.max_value).astype(dtype.numpy_dtype)
    return np.clip(np.rint(v), dtype.min_value, dtype.max_value).astype(dtype.numpy_dtype)


def avoid_value(values: np.ndarray, nodata: float, dtype: DtypeInfo) -> np.ndarray:
    """Move VALID output values that happen to equal ``nodata`` one step into the type's range,
    so that only truly invalid pixels read as nodata afterwards (in place; returns ``values``)."""
    if not np.isfinite(nodata):
        return values
    hit = values == values.dtype.type(nodata)
    if not hit.any():
        return values
    if dtype.is_float:
        toward = np.inf if nodata < dtype.max_value else -np.inf
        values[hit] = np.nextafter(values.dtype.type(nodata), values.dtype.type(toward))
    else:
        step = -1 if nodata >= dtype.max_value else 1
        values[hit] = values.dtype.type(nodata + step)
    return values
