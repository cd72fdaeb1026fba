"""The fidelity report of every output: how far its area average is from the input, per band.

A :class:`FidelityMeter` sees the output's rows in order as they are written (single process and
cluster assembly alike, so both report the same), reads the matching input rows itself, and measures
``area average of the output - input`` (see fidelity.py) in the input's units over the input pixels
whose whole footprint lies in the written output and is valid (input valid and every output pixel of
the footprint valid). Rows never fed (a writer that does not go row by row) are read back from the
output at the end. The result goes into the output's metadata as ``FIDELITY_*`` items.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import fidelity, raster_io
from .tiling import nearest_index

if TYPE_CHECKING:
    from osgeo import gdal

    from .run_plan import RunPlan

log = logging.getLogger(__name__)

# Output pixels measured per strip (bounds the meter's memory).
STRIP_PX = 1 << 22
# An integer output rounds each pixel by at most 0.5, so its average is off by at most this much
# unless clipping to the type's range moved a pixel further (a "saturated" input pixel).
ROUNDING_LIMIT = 0.5 + 1e-6


@dataclass
class FidelityReport:
    """Per data band: RMS and max |area average - input|, pixels measured, saturated pixels."""

    bands: list[int]
    rms: list[float]
    max: list[float]
    pixels: list[int]
    saturated: list[int]
    corrected: bool = False

    def metadata(self) -> dict[str, str]:
        """The output's ``FIDELITY_*`` metadata items (per-band lists, comma separated)."""
        def join(values: list[Any], fmt: str) -> str:
            return ",".join(fmt.format(v) for v in values)
        return {"FIDELITY_CORRECTED": "YES" if self.corrected else "NO",
                "FIDELITY_BANDS": join(self.bands, "{}"),
                "FIDELITY_RMS": join(self.rms, "{:.6g}"),
                "FIDELITY_MAX": join(self.max, "{:.6g}"),
                "FIDELITY_PIXELS": join(self.pixels, "{}"),
                "FIDELITY_SATURATED": join(self.saturated, "{}"),
                "FIDELITY_UNITS": "input values (area average of the output - input)"}

    @classmethod
    def from_metadata(cls, items: dict[str, str]) -> "FidelityReport | None":
        """Read the report back from an output's metadata (None when it has none)."""
        if "FIDELITY_RMS" not in items:
            return None
        def split(key: str, kind: Any) -> list[Any]:
            text = items.get(key, "")
            return [kind(v) for v in text.split(",")] if text else []
        return cls(split("FIDELITY_BANDS", int), split("FIDELITY_RMS", float), split("FIDELITY_MAX", float),
                   split("FIDELITY_PIXELS", int), split("FIDELITY_SATURATED", int),
                   items.get("FIDELITY_CORRECTED") == "YES")

    def describe(self) -> str:
        """One line: per band RMS / max, and the saturated count when there are any."""
        if not any(self.pixels):
            return "no input pixel has its whole footprint in the output"
        parts = [f"band {b}: RMS {r:.3g}, max {m:.3g}" for b, r, m in zip(self.bands, self.rms, self.max)]
        text = "; ".join(parts) + (" (corrected)" if self.corrected else "")
        if any(self.saturated):
            text += f"; {sum(self.saturated)} saturated pixel(s) where clipping to the data type breaks it"
        return text


def input_valid(src: "gdal.Dataset", plan: "RunPlan", window: tuple[int, int, int, int]) -> np.ndarray | None:
    """Validity of an input window exactly as ``compute_tile`` sees it (masks, finite floats)."""
    valid = raster_io.read_valid(src, plan.bands.data_bands, window) if plan.masked else None
    if plan.info.dtype.is_float:
        raw = raster_io.read_bands(src, plan.bands.data_bands, window)
        finite = np.isfinite(raw).all(axis=0)
        valid = finite if valid is None else (valid & finite)
    return valid


class FidelityMeter:
    """Measures the report from the output's rows as they are written (see the module docstring)."""

    def __init__(self, plan: "RunPlan", src: "gdal.Dataset | None" = None) -> None:
        self.plan = plan
        self.src = src
        info = plan.info
        self.h, self.w = info.height, info.width
        self.gh, self.gw = plan.out_size
        r0, r1, c0, c1 = plan.window
        self.rows_in = fidelity.inside_inputs(self.h, self.gh, r0, r1)
        cols_in = fidelity.inside_inputs(self.w, self.gw, c0, c1)
        self.cols = fidelity.axis_area(self.w, self.gw, *cols_in) if cols_in[1] > cols_in[0] else None
        self.next_row = self.rows_in[0]  # first input row not yet measured
        self.top = r0  # grid row of the buffer's first row
        self.buffer: np.ndarray | None = None
        n = len(plan.bands.data_bands)
        self.sum_sq, self.max = np.zeros(n), np.zeros(n)
        self.count, self.saturated = np.zeros(n, np.int64), np.zeros(n, np.int64)

    def _source(self) -> "gdal.Dataset":
        if self.src is None:
            self.src = raster_io.open_raster(self.plan.info.path)
        return self.src

    def feed(self, values: np.ndarray, row: int) -> None:
        """Output rows ``row..`` (window-relative, all output bands, full width), in order."""
        if self.cols is None or self.next_row >= self.rows_in[1]:
            return
        values = values[:len(self.plan.bands.data_bands)]
        grid_row = self.plan.window[0] + row
        if self.buffer is None or grid_row != self.top + self.buffer.shape[1]:
            self.buffer, self.top = values.copy(), grid_row  # first rows (or a gap: start again there)
        else:
            self.buffer = np.concatenate([self.buffer, values], axis=1)
        self._measure()

    def _measure(self) -> None:
        assert self.buffer is not None and self.cols is not None
        end = self.top + self.buffer.shape[1]
        done = min(self.rows_in[1], (end * self.h) // self.gh)  # inputs whose footprint ends by ``end``
        step = max(1, int(STRIP_PX // max(1, self.buffer.shape[2] * math.ceil(self.gh / self.h))))
        while self.next_row < done:
            stop = min(done, self.next_row + step)
            rows = fidelity.axis_area(self.h, self.gh, self.next_row, stop)
            if rows.out_start < self.top:  # the rows above were not fed: nothing to measure there
                self.next_row = -(-(self.top * self.h) // self.gh)
                continue
            part = self.buffer[:, rows.out_start - self.top:rows.out_stop - self.top]
            self._strip(rows, part)
            self.next_row = stop
        first = (self.next_row * self.gh) // self.h  # the first output row still needed
        if first > self.top:
            self.buffer = self.buffer[:, first - self.top:].copy()
            self.top = first

    def _strip(self, rows: fidelity.AxisArea, part: np.ndarray) -> None:
        assert self.cols is not None
        plan, cols = self.plan, self.cols
        c0 = plan.window[2]
        x = part[:, :, cols.out_start - c0:cols.out_stop - c0].astype(np.float64)
        src = self._source()
        y = raster_io.read_bands(src, plan.bands.data_bands,
                                 (cols.in_start, rows.in_start, cols.n_in, rows.n_in)).astype(np.float64)
        ny = nearest_index(self.h, self.gh, rows.out_start, rows.out_stop)
        nx = nearest_index(self.w, self.gw, cols.out_start, cols.out_stop)
        vr0, vc0 = int(min(ny[0], rows.in_start)), int(min(nx[0], cols.in_start))
        vr1, vc1 = int(max(ny[-1] + 1, rows.in_stop)), int(max(nx[-1] + 1, cols.in_stop))
        valid = input_valid(src, plan, (vc0, vr0, vc1 - vc0, vr1 - vr0))
        ok = np.ones(y.shape[1:], bool)
        if valid is not None:
            ok = valid[rows.in_start - vr0:rows.in_stop - vr0, cols.in_start - vc0:cols.in_stop - vc0].copy()
            inside = fidelity.footprint_ok(rows, cols, valid[np.ix_(ny - vr0, nx - vc0)])
            if inside is not None:
                ok &= inside
        avg = fidelity.average(rows, fidelity.average(cols, x, 2), 1)
        dtype = plan.info.dtype
        for k in range(len(plan.bands.data_bands)):
            err = (avg[k] - y[k])[ok]
            err = err[np.isfinite(err)]
            if not err.size:
                continue
            a = np.abs(err)
            self.sum_sq[k] += float(np.dot(err, err))
            self.max[k] = max(self.max[k], float(a.max()))
            self.count[k] += err.size
            if not dtype.is_float:
                low, high = self._limits(k)
                limit = ((x[k] <= low) | (x[k] >= high)).astype(np.float64)
                touched = fidelity.average(rows, fidelity.average(cols, limit, 1), 0) > 0
                self.saturated[k] += int(((np.abs(avg[k] - y[k]) > ROUNDING_LIMIT) & touched & ok).sum())

    def _limits(self, k: int) -> tuple[float, float]:
        """The range a valid value of band ``k`` can take: the type's, less a nodata value at its end
        (a valid pixel that would equal it is moved one step inside, see normalise.avoid_value)."""
        dtype, nodata = self.plan.info.dtype, self.plan.nodata[k]
        low, high = dtype.min_value, dtype.max_value
        return (low + 1 if nodata == low else low), (high - 1 if nodata == high else high)

    def finish(self, dst: "gdal.Dataset | None" = None) -> FidelityReport:
        """The report; rows never fed are read back from ``dst`` (the open output) first."""
        if self.cols is not None and self.next_row < self.rows_in[1] and dst is not None:
            r0 = self.plan.window[0]
            start = r0 if self.buffer is None else self.top + self.buffer.shape[1]  # the first row not fed
            chunk = max(1, STRIP_PX // max(1, dst.RasterXSize))
            bands = list(range(1, len(self.plan.bands.data_bands) + 1))
            while start < self.plan.window[1]:
                n = min(chunk, self.plan.window[1] - start)
                self.feed(raster_io.read_bands(dst, bands, (0, start - r0, dst.RasterXSize, n)), start - r0)
                start += n
        n = np.maximum(self.count, 1)
        rms = np.sqrt(self.sum_sq / n)
        report = FidelityReport(list(self.plan.bands.data_bands), [float(v) for v in rms],
                                [float(v) for v in self.max], [int(v) for v in self.count],
                                [int(v) for v in self.saturated], bool(self.plan.fidelity_reach is not None))
        log.info("fidelity: %s", report.describe())
        return report
