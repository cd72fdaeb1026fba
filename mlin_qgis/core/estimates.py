"""Estimates of a run before it runs: output size, bytes on disk and seconds (the dialog, `sr`'s line).

The output window and tiles come from the run plan's own arithmetic (run_plan.py), so the estimate
describes the run that would be made; the speed comes from core/calibration.py.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from . import raster_io
from .auto import timing_model
from .calibration import measured_throughput, throughput
from .card import ModelCard
from .engine import CPU, CUDA, check_ensemble, cuda_offered
from .errors import MlinError
from .inputs import check_scale, check_tile_size
from .models import decoder_file, resolve_model, spec_variant
from .outputs import estimate_bytes
from .run_plan import default_tile, extent_window, output_window, window_tiles
from .tiling import halo_for

# Output megapixels per second per band group, used by estimate() until a run in this process has
# measured it (see measured_throughput). CPU: the official LIIF model (EDSR-baseline + 256-wide MLP,
# local ensemble) measured 0.009 Mpx/s at x4 on 2 shared cores (the decoder is ~75 % of the time);
# a free 8-core desktop is several times faster, so this errs long. CUDA: not measured yet (a guess).
DEFAULT_MPX_PER_S = {CPU: 0.01, CUDA: 5.0}


@dataclass
class Estimate:
    """Output size in pixels, estimated bytes on disk and estimated seconds (for the dialog)."""

    width: int
    height: int
    bytes: int
    seconds: float
    basis: str = ""  # where the seconds come from, in words


def estimate(input_path: str | os.PathLike, scale: float, model: str | os.PathLike | None = None,
             bands: Sequence[int] | None = None, all_bands: bool = False, ensemble: int = 1,
             device: str = "auto", tile_size: int | None = None, threads: int | None = None,
             extent: Sequence[float] | None = None, extent_crs: str | None = None) -> Estimate:
    """Output size, bytes on disk (see outputs.COMPRESSION_FACTOR) and seconds, without running the job.

    Seconds come from the last real run in this process with the same model and provider when there
    is one, else from this machine's calibrated throughput (core/calibration.py: a tiny timed run,
    cached across sessions), else from DEFAULT_MPX_PER_S when no measurement is possible.
    A self-ensemble of 8 costs 8 passes."""
    scale = check_scale(scale)
    passes = len(check_ensemble(ensemble))
    ds = raster_io.open_raster(input_path)
    info = raster_io.describe(ds, input_path)
    plan = raster_io.plan_bands(info, bands, all_bands)
    # the plan's own output window (refuses outputs too large to make; the halo's extra reads are ignored)
    out = output_window(info, scale, extent_window(info, extent, extent_crs))
    out_h, out_w = out.size
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
    tiles = window_tiles(info, out, check_tile_size(tile_size) or default_tile(rate.provider, scale), halo)
    lr_read = sum(t.rows.read_size * t.cols.read_size for t in tiles)
    seconds = groups * rate.seconds(lr_read, out_w * out_h, passes)
    return Estimate(out_w, out_h, size, seconds,
                    f"a calibration run on this machine ({rate.mpx_per_s(scale):.3g} Mpx/s at x{scale:g})")
