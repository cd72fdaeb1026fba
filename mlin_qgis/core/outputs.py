"""Output files of a run: their checks, their creation and their atomic appearance.

The output (and weights map) are checked before anything is computed (a writable GeoTIFF path, not
the input, enough free space), written to hidden temporary files beside their targets and renamed
only on success (:class:`AtomicOutputs`); any failure or cancel removes them, so a half-written file
never carries the target's name.

Output georeferencing: the input's geotransform with pixel size and rotation terms divided by the
effective scale per axis (see run_plan.py), same CRS; GCPs are moved to the output grid.
"""
from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from osgeo import gdal

from . import raster_io
from .aware import CODE_NAMES
from .card import ModelCard
from .errors import MlinError
from .fidelity_report import FidelityMeter, FidelityReport
from .models import AUTO_MODEL
from .normalise import dtype_info
from .raster_io import BandPlan, RasterInfo
from .request import ProgressFn

if TYPE_CHECKING:
    from .run_plan import RunPlan

log = logging.getLogger(__name__)

# Size estimate: uncompressed bytes divided by this factor. Measured: the official LIIF model's x4
# output of a 100x100 OSBS_029 crop (uint8 RGB, ZSTD + predictor 2) compresses 1.38x; smoother
# outputs (larger scales) compress more. 1.25 over-estimates the size on purpose, so that the
# free-space check refuses a run that would fill the disk rather than letting it fail half-way.
COMPRESSION_FACTOR = 1.25
# Fixed overhead per file (headers, tile index) added to the estimate.
FILE_OVERHEAD_BYTES = 1 << 20

_FLOAT32 = dtype_info(gdal.GDT_Float32)


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


def _temp_path(target: Path) -> Path:
    return target.with_name(f".{target.stem}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}{target.suffix}")


def output_nodata(info: RasterInfo, plan: BandPlan) -> list[float | None]:
    """Nodata value of each output data band: its own; else the first chosen band's (so every band
    of a masked pixel reads as nodata); None when no chosen band has one."""
    own = [info.nodata[b - 1] for b in plan.data_bands]
    first = next((v for v in own if v is not None), None)
    return [v if v is not None else first for v in own]



def set_georeferencing(ds: gdal.Dataset, info: RasterInfo, gt: tuple[float, ...] | None,
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


def prepare_output(path: Path, info: RasterInfo, plan: BandPlan, size: tuple[int, int],
                    gt: tuple[float, ...] | None, nodata: list[float | None], per_dataset_mask: bool,
                    card: ModelCard, scale: float, compress: str = raster_io.DEFAULT_COMPRESSION,
                    route: str = "", input_code: Sequence[float] | None = None) -> gdal.Dataset:
    out_h, out_w = size
    groups_rgb = len(plan.groups) == 1 and len(plan.groups[0]) == 3 and \
        [info.color_interp[b - 1] for b in plan.groups[0]] == list(raster_io.RGB_INTERP)
    options = raster_io.gtiff_options(info.dtype, rgb=groups_rgb, alpha=plan.alpha is not None, compress=compress)
    ds = raster_io.create_gtiff(path, out_w, out_h, len(plan.output_bands), info.dtype, options)
    set_georeferencing(ds, info, gt, out_w / info.width, out_h / info.height)
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
        self.dst = prepare_output(self.tmp_out, plan.info, plan.bands, plan.window_size, plan.geotransform,
                                   list(plan.nodata), plan.per_dataset_mask, self.card, plan.scale, plan.compression,
                                   plan.route, plan.input_code)
        if self.tmp_weights is not None:
            out_h, out_w = plan.window_size
            self.wdst = raster_io.create_gtiff(self.tmp_weights, out_w, out_h, 1, _FLOAT32,
                                               raster_io.gtiff_options(_FLOAT32, compress=plan.compression))
            set_georeferencing(self.wdst, plan.info, plan.geotransform, *plan.scale_xy)
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


