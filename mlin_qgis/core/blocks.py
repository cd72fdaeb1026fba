"""Blocks: the cluster's unit of work, their parts on disk and the manifest that makes a run resumable.

A block is a rectangle of the run's tiles (``RunPlan.tiles``: the very plan of the single-process
path), about ``DEFAULT_BLOCK_PX`` output pixels a side. :func:`compute_block` runs ``compute_tile`` on
each of its tiles and writes the block as a GeoTIFF *part* in a parts folder beside the output. The
*manifest* (JSON in that folder, written by the driver only) lists every finished part with its window
and checksum, under the run's parameters and the model's hash, so a rerun computes only what is missing
and refuses to mix parts of different runs. :func:`assemble` copies the parts into the final output
through ``AtomicOutputs``, so the final file still appears atomically. Nothing here imports Dask: the
driver (cluster.py) only schedules these functions.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from osgeo import gdal

from . import raster_io
from .band_writer import RowBands, TileWriter, write_mask
from .card import ModelCard
from .engine import SuperResolver
from .errors import MlinError, RasterError
from .fidelity_report import FidelityReport
from .outputs import AtomicOutputs
from .run_plan import RunPlan
from .tile_compute import compute_tile
from .tiling import Tile

log = logging.getLogger(__name__)

# Output pixels per block side: big enough that a task (seconds to minutes of compute) dwarfs Dask's
# per-task overhead (~ms) and the part's file overhead, small enough that a 20k x 20k x2 orthophoto
# still gives ~400 blocks to spread and that a lost block costs little to redo.
DEFAULT_BLOCK_PX = 2048
MIN_AUTO_BLOCK_PX = 256  # the automatic choice never goes below (a user's --block-size may, down to 64)
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
# Parts are internal: fast lossless compression (the final output's compression is applied at assembly).
PART_COMPRESSION = ("ZSTD", "DEFLATE")


@dataclass(frozen=True)
class Block:
    """Tiles whose output windows tile the rectangle rows [r0, r1) x cols [c0, c1) of the output grid."""

    index: int
    tiles: tuple[Tile, ...]
    rows: tuple[int, int]
    cols: tuple[int, int]

    @property
    def part_name(self) -> str:
        return f"block_{self.index:05d}.tif"

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows[1] - self.rows[0], self.cols[1] - self.cols[0]

    @property
    def read_window(self) -> tuple[int, int, int, int]:
        """GDAL order (xoff, yoff, xsize, ysize): the LR pixels (halo included) the block reads."""
        x0 = min(t.cols.read_start for t in self.tiles)
        x1 = max(t.cols.read_stop for t in self.tiles)
        y0 = min(t.rows.read_start for t in self.tiles)
        y1 = max(t.rows.read_stop for t in self.tiles)
        return x0, y0, x1 - x0, y1 - y0

    def describe(self) -> str:
        x, y, w, h = self.read_window
        return (f"block {self.index} (output rows {self.rows[0]}-{self.rows[1] - 1}, cols {self.cols[0]}-"
                f"{self.cols[1] - 1}; input window x {x}-{x + w - 1}, y {y}-{y + h - 1})")


def check_block_px(value: object) -> int:
    """A whole number of output pixels >= 64 (smaller blocks cost more in overhead than they spread)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    if not (number == number and number.is_integer() and number >= 64):
        raise MlinError(f"block size must be a whole number of output pixels >= 64 (default {DEFAULT_BLOCK_PX}), "
                        f"got {value!r}.")
    return int(number)


def _group_spans(spans: list[tuple[int, int]], block_px: int) -> list[list[tuple[int, int]]]:
    """Consecutive tile spans of one axis, ``round(block_px / typical span)`` (at least 1) per group.

    Counting tiles rather than pixels keeps blocks regular: a tile's output span varies by a pixel
    (ownership rounding), which must not split a 2 x 2-tile block into a 1 x 1 one."""
    sizes = sorted(b - a for a, b in spans)
    typical = sizes[len(sizes) // 2] if sizes else 1
    per = max(1, int(round(block_px / max(1, typical))))
    return [spans[i:i + per] for i in range(0, len(spans), per)]


def plan_blocks(tiles: Sequence[Tile], block_px: int = DEFAULT_BLOCK_PX) -> list[Block]:
    """Row-major blocks of whole tiles covering every tile exactly once."""
    block_px = check_block_px(block_px)
    row_spans = sorted({(t.rows.out_start, t.rows.out_stop) for t in tiles})
    col_spans = sorted({(t.cols.out_start, t.cols.out_stop) for t in tiles})
    row_group = {s: i for i, g in enumerate(_group_spans(row_spans, block_px)) for s in g}
    col_group = {s: j for j, g in enumerate(_group_spans(col_spans, block_px)) for s in g}
    cells: dict[tuple[int, int], list[Tile]] = {}
    for t in tiles:
        key = (row_group[(t.rows.out_start, t.rows.out_stop)], col_group[(t.cols.out_start, t.cols.out_stop)])
        cells.setdefault(key, []).append(t)
    blocks = []
    for index, key in enumerate(sorted(cells)):
        members = tuple(cells[key])
        blocks.append(Block(index, members,
                            (min(t.rows.out_start for t in members), max(t.rows.out_stop for t in members)),
                            (min(t.cols.out_start for t in members), max(t.cols.out_stop for t in members))))
    return blocks


# -- parameters and the manifest ---------------------------------------------------------------
_model_hashes: dict[tuple[str, int, int], str] = {}


def model_hash(files: Sequence[Path]) -> str:
    """SHA-256 of the encoder and decoder files that run (cached per file size and mtime)."""
    digest = hashlib.sha256()
    for path in files:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if key not in _model_hashes:
            _model_hashes[key] = file_sha256(path)
        digest.update(_model_hashes[key].encode())
    return digest.hexdigest()


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(chunk), b""):
            digest.update(piece)
    return digest.hexdigest()


def _input_stamp(source: str) -> list[int] | None:
    """(size, mtime) of a local input, so parts made from an older version of it are not reused."""
    try:
        st = os.stat(source)
    except OSError:  # GDAL virtual paths (/vsicurl/, /vsis3/, ...): no local stamp
        return None
    return [st.st_size, st.st_mtime_ns]


def run_parameters(plan: RunPlan, source: str, model_files: Sequence[Path], card: ModelCard, block_px: int,
                   precision: str = "fp32") -> dict[str, Any]:
    """What the parts depend on; a resume must match all of it. (Output compression, COG, device and
    threads are left out: they change the final file's encoding or the speed, not the parts' pixels.)"""
    return {
        "input": source if raster_io._is_virtual(source) else str(Path(source).resolve()),
        "input_stamp": _input_stamp(source),
        "input_size": [plan.info.width, plan.info.height],
        "scale": plan.scale,
        "bands": [list(g) for g in plan.bands.groups],
        "alpha": plan.bands.alpha,
        "window": list(plan.window),
        "tile_size": plan.tile_size,
        "block_size": block_px,
        "ensemble": plan.ensemble,
        "precision": precision,
        **({"fidelity": True} if plan.fidelity_reach is not None else {}),  # absent when off: old parts resume
        "model": f"{card.name} {card.version}",
        "model_sha256": model_hash(model_files),
    }


# How a parameter is named in the message that refuses a resume, and which option sets it.
_PARAMETER_WORDS = {
    "input": "input", "input_stamp": "input file (size/modification time)", "input_size": "input size",
    "scale": "scale (--scale)", "bands": "bands (--bands/--all-bands)", "alpha": "alpha band",
    "window": "area (--extent)", "tile_size": "tile size (--tile-size)", "block_size": "block size (--block-size)",
    "ensemble": "ensemble (--ensemble)", "fidelity": "fidelity (--fidelity)",
    "precision": "precision (--precision)", "model": "model (--model)", "model_sha256": "model files",
}


@dataclass
class PartRecord:
    """One finished block on disk: where it lies on the output grid, its file and checksum."""

    index: int
    rows: tuple[int, int]
    cols: tuple[int, int]
    file: str
    sha256: str
    bytes: int
    seconds: float = 0.0

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "PartRecord":
        return cls(int(d["index"]), tuple(d["rows"]), tuple(d["cols"]), str(d["file"]),
                   str(d["sha256"]), int(d["bytes"]), float(d.get("seconds", 0.0)))


def parts_folder(output_path: Path) -> Path:
    """``OUT.tif.parts/`` beside the output (visible, so a user sees what a resume would use)."""
    return output_path.with_name(output_path.name + ".parts")


@dataclass
class Manifest:
    folder: Path
    parameters: dict[str, Any]
    blocks_total: int
    parts: dict[int, PartRecord] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST

    @classmethod
    def load(cls, folder: Path) -> "Manifest | None":
        path = folder / MANIFEST
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            parts = {int(k): PartRecord.from_json(v) for k, v in data["parts"].items()}
            return cls(folder, dict(data["parameters"]), int(data["blocks_total"]), parts)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RasterError(f"the manifest {path} of an earlier run is unreadable ({exc}); remove the folder "
                              f"{folder} or add --restart to start again.") from None

    def save(self) -> None:
        """Atomically (temporary file + rename): a crash never leaves a half-written manifest."""
        data = {"version": MANIFEST_VERSION, "parameters": self.parameters, "blocks_total": self.blocks_total,
                "parts": {str(k): asdict(v) for k, v in sorted(self.parts.items())}}
        tmp = self.folder / f".{MANIFEST}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)

    def differences(self, parameters: dict[str, Any]) -> list[str]:
        """'scale (--scale): 2 in the parts, 3 now' for every parameter that differs."""
        diffs = []
        for key in sorted(set(self.parameters) | set(parameters)):
            old, new = self.parameters.get(key), _jsonable(parameters.get(key))
            if old != new:
                if key == "model_sha256" or key == "input_stamp":
                    diffs.append(f"{_PARAMETER_WORDS.get(key, key)} changed since the parts were made")
                else:
                    diffs.append(f"{_PARAMETER_WORDS.get(key, key)}: {old} in the parts, {new} now")
        return diffs


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def open_manifest(folder: Path, parameters: dict[str, Any], blocks_total: int, restart: bool) -> Manifest:
    """The run's manifest: a fresh one, or the earlier run's when its parameters match (its parts
    checked: a missing or damaged part is dropped, so it is computed again). Parameters that differ
    refuse the resume, naming each difference; ``restart`` discards the earlier parts instead."""
    manifest = Manifest.load(folder)
    if manifest is not None and restart:
        shutil.rmtree(folder, ignore_errors=True)
        manifest = None
    if manifest is not None:
        diffs = manifest.differences(parameters)
        if diffs:
            raise MlinError(f"{folder} holds {len(manifest.parts)} part(s) of a run with other options "
                            f"({'; '.join(diffs)}); rerun with that run's options to resume it, or add "
                            "--restart to discard its parts.")
        for index, record in list(manifest.parts.items()):
            path = folder / record.file
            if not path.exists() or path.stat().st_size != record.bytes or file_sha256(path) != record.sha256:
                log.warning("part %s is missing or damaged; it will be computed again", path)
                del manifest.parts[index]
        manifest.blocks_total = blocks_total
    else:
        folder.mkdir(parents=True, exist_ok=True)
        manifest = Manifest(folder, _jsonable(parameters), blocks_total)
    for stale in folder.glob(".block_*"):  # temporary parts of a crashed worker
        stale.unlink(missing_ok=True)
    manifest.save()
    return manifest


# -- computing and assembling -------------------------------------------------------------------
def _part_options(plan: RunPlan) -> list[str]:
    for name in PART_COMPRESSION:
        try:
            return raster_io.gtiff_options(plan.info.dtype, compress=name)
        except MlinError:
            continue
    return raster_io.gtiff_options(plan.info.dtype, compress="NONE")


def compute_block(src: gdal.Dataset, plan: RunPlan, engine: SuperResolver, block: Block, folder: Path) -> PartRecord:
    """Super-resolve one block's tiles into its part file (written beside, renamed when complete).

    A failure raises RasterError naming the block's output and input windows; no partial part is left."""
    import time

    start = time.perf_counter()
    final = folder / block.part_name
    tmp = folder / f".{block.part_name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tif"
    rows, cols = block.shape
    try:
        dst = raster_io.create_gtiff(tmp, cols, rows, len(plan.bands.output_bands), plan.info.dtype, _part_options(plan))
        if plan.per_dataset_mask:
            raster_io.create_internal_mask(dst)
        writer = TileWriter(plan, dst, None, origin=(block.rows[0], block.cols[0]))
        for k, tile in enumerate(block.tiles):
            if k and tile.rows.out_start != block.tiles[k - 1].rows.out_start:
                writer.end_row(tile.rows.out_start)
            writer.write(compute_tile(src, plan, engine, tile))
        writer.finish()
        del writer  # the last reference to the dataset must go for GDAL to really close the file
        raster_io.close(dst)
        dst = None
        os.replace(tmp, final)
    except MlinError as exc:
        raster_io.remove_raster_files(tmp)
        raise RasterError(f"{block.describe()} of {plan.info.path} failed: {exc}") from None
    except BaseException:
        raster_io.remove_raster_files(tmp)
        raise
    return PartRecord(block.index, block.rows, block.cols, block.part_name, file_sha256(final),
                      final.stat().st_size, time.perf_counter() - start)


def read_part(path: Path, plan: RunPlan) -> tuple[np.ndarray, np.ndarray | None]:
    """A part's values (bands, rows, cols) and, when the run writes a mask band, its mask."""
    with raster_io.gdal_errors() as errors:
        ds = gdal.Open(str(path))
        values = None if ds is None else ds.ReadAsArray()
        mask = None
        if ds is not None and plan.per_dataset_mask:
            mask = ds.GetRasterBand(1).GetMaskBand().ReadAsArray()
    if values is None:
        raise RasterError(f"the part {path} cannot be read ({'; '.join(errors) or 'unknown GDAL error'}); "
                          "rerun the same command to compute it again.")
    return values.reshape(-1, *values.shape[-2:]), mask


def assemble(plan: RunPlan, card: ModelCard, manifest: Manifest, blocks: Sequence[Block],
             progress: Callable[[float, str], None] | None = None) -> FidelityReport | None:
    """Copy every block's part into the final output (atomic: it appears only when complete); returns
    the output's fidelity report. A part
    whose checksum no longer matches is dropped from the manifest and the run fails, naming it; the
    rerun recomputes just that block."""
    with AtomicOutputs(plan, card) as outputs:
        assert outputs.dst is not None
        # whole rows of GeoTIFF blocks, each written once and flushed (flat memory, as in the single path);
        # the lambdas look the dataset up on ``outputs``, so no reference outlives commit's close
        width = outputs.dst.RasterXSize
        def write_values(a: np.ndarray, y: int) -> None:
            outputs.meter.feed(a, y)  # the fidelity report sees the same rows as in the single path
            raster_io.write_window(outputs.dst, a, 0, y)

        values = RowBands(write_values, outputs.dst.RasterCount, width, plan.info.dtype.numpy_dtype)
        mask_rows = RowBands(lambda a, y: write_mask(outputs.dst, a[0], 0, y), 1, width, np.dtype(np.uint8)) \
            if plan.per_dataset_mask else None
        for k, block in enumerate(blocks):
            if k and block.rows[0] != blocks[k - 1].rows[0]:
                done_to = block.rows[0] - plan.window[0]
                if values.complete_to(done_to) | bool(mask_rows and mask_rows.complete_to(done_to)):
                    outputs.dst.FlushCache()
            record = manifest.parts[block.index]
            path = manifest.folder / record.file
            if not path.exists() or file_sha256(path) != record.sha256:
                del manifest.parts[block.index]
                manifest.save()
                raise RasterError(f"the part {path} of {block.describe()} is missing or damaged; rerun the "
                                  "same command: only that block is computed again.")
            part, mask = read_part(path, plan)
            xoff, yoff = block.cols[0] - plan.window[2], block.rows[0] - plan.window[0]
            values.put(part, yoff, xoff)
            if mask_rows is not None and mask is not None:
                mask_rows.put(mask[None], yoff, xoff)
            if progress:
                progress((k + 1) / len(blocks), f"assembling {k + 1}/{len(blocks)}")
        values.complete_to(None)
        if mask_rows is not None:
            mask_rows.complete_to(None)
        outputs.commit(progress)
    return outputs.fidelity
