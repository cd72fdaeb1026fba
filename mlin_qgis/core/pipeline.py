"""The `sr` pipeline: super-resolve a georeferenced raster into a GeoTIFF, tile by tile.

Used by the CLI (`python -m mlin_qgis sr`), the Processing algorithm and the zoom dialog. It only
orchestrates, top to bottom; each step lives in its own module:

1. plan the run (run_plan.py): check the request (inputs.py, outputs.py), compute the band
   statistics once, decide ``auto``'s code, load the model, lay out the output window and tiles;
2. open the outputs as hidden temporary files (outputs.py: :class:`AtomicOutputs`);
3. for each halo tile, compute it (tile_compute.py) and write it in whole rows of GeoTIFF blocks
   (band_writer.py), checking for a cancel between decoder calls;
4. commit: close, write the fidelity report, translate to COG if asked and rename onto the target.
   Any failure or cancel removes the temporary files.

The run's speed is recorded (calibration.py) for later estimates (estimates.py). The cluster path
(cluster.py) uses the same plan, tile computation and writer, block by block.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import raster_io
from .band_writer import TileWriter
from .calibration import record_run
from .engine import open_engine
from .errors import MlinCancelled
from .estimates import Estimate, estimate
from .fidelity_report import FidelityReport
from .inputs import check_scale
from .outputs import AtomicOutputs
from .request import CancelFn, ProgressFn, SuperResolveRequest
from .run_plan import plan_run
from .tile_compute import compute_tile

__all__ = ["CancelFn", "Estimate", "ProgressFn", "SuperResolveRequest", "SuperResolveResult", "estimate",
           "superresolve"]

log = logging.getLogger(__name__)


@dataclass
class SuperResolveResult:
    """What a finished run made and how (the CLI, Processing and the dialog report it)."""

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
    record_run(engine.model_spec, engine.provider, mpx * passes / max(seconds, 1e-9))
    sx, sy = plan.scale_xy
    return SuperResolveResult(output_path=plan.output_path, provider=engine.provider, width=out_w, height=out_h,
                              scale_x=sx, scale_y=sy, seconds=seconds, mpx_per_s=mpx / max(seconds, 1e-9),
                              warnings=list(plan.warnings), weights_map_path=plan.weights_path,
                              model=f"{engine.card.name} {engine.card.version}", tiles=len(plan.tiles),
                              route=plan.route, fidelity=outputs.fidelity)
