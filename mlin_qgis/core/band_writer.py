"""The row-band writer: computed tiles into the output GeoTIFF in whole rows of its blocks.

GDAL's block cache holds written blocks until the file is closed, so peak memory grew with the
output (docs/PERFORMANCE.md, "Memory"). Here windows are gathered into full-width rows
(:class:`RowBands`) and written and flushed once whole rows of GeoTIFF blocks are complete: each
block is written once, memory stays flat and the file's bytes are exactly those of writing every
window and closing (tests/test_engine_pipeline.py checks that byte for byte).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
from osgeo import gdal

from . import raster_io
from .errors import MlinError

if TYPE_CHECKING:
    from .fidelity_report import FidelityMeter
    from .run_plan import RunPlan
    from .tile_compute import TileResult


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
    end; windows go through :class:`RowBands`, one per written band set."""

    def __init__(self, plan: RunPlan, dst: gdal.Dataset, wdst: gdal.Dataset | None,
                 origin: tuple[int, int] | None = None, meter: FidelityMeter | None = None) -> None:
        """``origin``: the (row, col) of ``dst``'s first pixel on the whole output grid (default: the
        run's window; a cluster block's part passes its own corner). ``meter`` sees the rows written."""
        self.plan, self.dst, self.wdst = plan, dst, wdst
        self.origin = (plan.window[0], plan.window[2]) if origin is None else origin
        self.buffers: list[RowBands] = []
        width = dst.RasterXSize
        dtype = plan.info.dtype.numpy_dtype

        def write_values(a: np.ndarray, y: int) -> None:
            if meter is not None:
                meter.feed(a, y)
            raster_io.write_window(dst, a, 0, y)

        self.values = RowBands(write_values, dst.RasterCount, width, dtype)
        self.buffers.append(self.values)
        if plan.per_dataset_mask:
            # the lambdas hold the datasets, never self: a cycle would keep the file open past commit
            self.mask = RowBands(lambda a, y: write_mask(dst, a[0], 0, y), 1, width, np.dtype(np.uint8))
            self.buffers.append(self.mask)
        if wdst is not None:
            self.deviation = RowBands(lambda a, y: raster_io.write_window(wdst, a, 0, y), 1, width,
                                      np.dtype(np.float32))
            self.buffers.append(self.deviation)

    def write(self, result: TileResult) -> None:
        r, c = result.tile.rows, result.tile.cols
        xoff, yoff = c.out_start - self.origin[1], r.out_start - self.origin[0]
        self.values.put(result.values, yoff, xoff)
        if self.plan.per_dataset_mask:
            mask = np.full((r.out_size, c.out_size), 255, np.uint8) if result.valid is None else \
                np.where(result.valid, 255, 0).astype(np.uint8)
            self.mask.put(mask[None], yoff, xoff)
        if self.wdst is not None and result.deviation is not None:
            self.deviation.put(result.deviation[None].astype(np.float32), yoff, xoff)

    def end_row(self, next_row: int | None) -> None:
        """The row of tiles above output row ``next_row`` (whole grid; None: the last) is complete."""
        local = None if next_row is None else next_row - self.origin[0]
        wrote = [rows.complete_to(local) for rows in self.buffers]
        if any(wrote):
            for ds in (self.dst, self.wdst):
                if ds is not None:
                    ds.FlushCache()

    def finish(self) -> None:
        self.end_row(None)
