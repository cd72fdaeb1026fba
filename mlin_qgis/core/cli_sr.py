"""`python -m mlin_qgis sr INPUT OUTPUT --scale S ...`: the command-line front of the pipeline.

Exit codes (core/exits.py): 0 done, 2 bad input or unusable model (MlinError), 130 cancelled (Ctrl-C),
1 a bug (one line naming the log file that holds the traceback). The first
Ctrl-C asks the run to stop after the current tile; a second one stops at once. Either way the
partial output is removed. The progress bar is plain text on stderr (no tqdm in the core).
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any, TextIO

from . import raster_io
from .aware import LOOKS, LOOKS_HELP
from .blocks import DEFAULT_BLOCK_PX
from .cluster import ClusterConfig, ClusterRequest, ClusterResult, superresolve_cluster
from .errors import MlinError
from .estimates import estimate
from .exits import EXIT_BAD_INPUT as EXIT_BAD_INPUT
from .exits import EXIT_CANCELLED as EXIT_CANCELLED
from .exits import EXIT_OK, exit_code
from .inputs import check_scale
from .limits import output_grid
from .pipeline import superresolve
from .request import SuperResolveRequest


def _bands(text: str) -> list[int]:
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bands must be comma-separated band numbers such as 1,2,3, got {text!r}") from None


def _extent(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.replace(" ", "").split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"extent must be xmin,ymin,xmax,ymax (four numbers), got {text!r}")
    return values


def _installed_models_help() -> str:
    """'auto (default): ...; name: when to use it; ...' from the installed models' cards."""
    from .auto import AUTO_DESCRIPTION, auto_available
    from .models import available_models

    try:
        entries = available_models()
        auto = auto_available()
    except Exception as exc:  # a help text must never fail
        return f"(cannot list them: {exc})"
    if not entries:
        return "none"
    items = [f"auto (default): {AUTO_DESCRIPTION}"] if auto else []
    items += [f"{e.name}{' (default)' if i == 0 and not auto else ''}: {e.card.description or e.card.method}"
              for i, e in enumerate(entries)]
    return "; ".join(items)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Declare the `sr` options on ``parser`` (mlin_qgis.__main__ makes the sub-command)."""
    parser.add_argument("input", help="input raster (GeoTIFF or any raster GDAL reads)")
    parser.add_argument("output", help="output GeoTIFF (.tif); written atomically")
    add_options(parser)
    parser.add_argument("--weights-map", default=None, metavar="PATH",
                        help="also write a float32 GeoTIFF of max |weights - area_weights| per output pixel")
    add_cluster_arguments(parser)
    return parser


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options every super-resolution takes (shared by `sr` and `batch`)."""
    parser.add_argument("--scale", required=True, help="enlargement factor > 1, any real number (e.g. 2.5)")
    parser.add_argument("--model", default=None, help="installed model name, model folder or .onnx path; "
                        "installed: " + _installed_models_help())
    parser.add_argument("--input-looks", default="auto", choices=["auto", *LOOKS], help=LOOKS_HELP)
    parser.add_argument("--bands", type=_bands, default=None,
                        help="3 band numbers fed as R,G,B (e.g. 4,3,2) or 1 band (grey); default: the "
                             "Red/Green/Blue bands, else 1,2,3")
    parser.add_argument("--all-bands", action="store_true",
                        help="process every non-alpha band, in groups of three (left-overs as grey)")
    parser.add_argument("--tile-size", type=int, default=None, help="LR tile core size in pixels "
                        "(default 256 on CPU, 512 on CUDA, smaller at large scales)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: all cores)")
    parser.add_argument("--precision", choices=["fp32", "int8"], default="fp32",
                        help="int8: the model's quantised decoder (decoder.int8.onnx, made by `mlin quantize`); "
                             "faster on some CPUs, at a measured quality cost (docs/PERFORMANCE.md); default fp32")
    parser.add_argument("--ensemble", type=int, choices=[1, 8], default=1,
                        help="8: average the 8 flips/transposes of the input (best quality, 8x the time; "
                             "see the model card for the measured gain); default 1")
    parser.add_argument("--extent", type=_extent, default=None, metavar="XMIN,YMIN,XMAX,YMAX",
                        help="area of interest in the raster's CRS (or --extent-crs): only that part is "
                             "super-resolved, snapped to input pixels; it equals the same window of a whole run")
    parser.add_argument("--extent-crs", default=None, metavar="CRS", help="CRS of --extent, e.g. EPSG:4326")
    parser.add_argument("--cog", action="store_true", help="write a Cloud Optimized GeoTIFF")
    parser.add_argument("--fidelity", action="store_true",
                        help="radiometric fidelity: correct the output so that its area average over each input "
                             "pixel gives back that pixel, per band (minimum change; saturated pixels are "
                             "counted); the FIDELITY report is written for every output either way")
    parser.add_argument("--compress", default="DEFLATE", choices=["DEFLATE", "ZSTD", "LZW", "NONE"],
                        help="GeoTIFF compression (default DEFLATE with a predictor, which every GIS tool reads; "
                             "ZSTD is smaller and faster where readers support it)")


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """--cluster, --block-size and --restart (shared by `sr` and `batch`)."""
    group = parser.add_argument_group("cluster (optional; needs dask[distributed])")
    group.add_argument("--cluster", default=None, metavar="local[:N]|tcp://HOST:PORT",
                       help="run blocks in parallel on Dask: local (one worker per core), local:N (N worker "
                            "processes) or a running scheduler's address; resumable (rerun to continue)")
    group.add_argument("--block-size", type=int, default=None, metavar="PX",
                       help=f"output pixels per block side, the cluster's unit of work (default {DEFAULT_BLOCK_PX}, "
                            "smaller when the raster would give fewer than two blocks per worker thread)")
    group.add_argument("--restart", action="store_true",
                       help="discard the finished blocks of an earlier interrupted run instead of resuming them")


class ProgressBar:
    """A plain-text progress bar: redrawn in place on a terminal, a line per 10 % otherwise."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self._last_decile = -1

    def __call__(self, fraction: float, message: str) -> None:
        fraction = min(1.0, max(0.0, fraction))
        elapsed = time.perf_counter() - self.start
        eta = f" eta {elapsed * (1 - fraction) / fraction:5.0f}s" if 0 < fraction < 1 else ""
        filled = int(round(self.width * fraction))
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {100 * fraction:5.1f}% {message}{eta}"
        if self.tty:
            self.stream.write("\r" + line.ljust(100))
            if fraction >= 1.0:
                self.stream.write("\n")
        else:
            decile = int(fraction * 10)
            if decile == self._last_decile:
                return
            self._last_decile = decile
            self.stream.write(line + "\n")
        self.stream.flush()


class CancelOnSigint:
    """``with CancelOnSigint(what) as cancel:`` the first Ctrl-C sets ``cancel.requested`` (the run stops
    after the current ``what``), a second one raises KeyboardInterrupt at once."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.requested = False
        self._previous: Any = None

    def __call__(self) -> bool:
        return self.requested

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        sys.stderr.write(f"\ncancelling after the current {self.what} (Ctrl-C again to stop now)...\n")
        sys.stderr.flush()

    def __enter__(self) -> "CancelOnSigint":
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: Ctrl-C then raises KeyboardInterrupt as usual
            self._previous = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def request_from_args(args: Any, input_path: Any, output_path: Any) -> SuperResolveRequest:
    """The SuperResolveRequest the common sr options describe (also used by `batch`)."""
    return SuperResolveRequest(
        input_path=input_path, output_path=output_path, scale=args.scale,
        model=getattr(args, "model", None), bands=getattr(args, "bands", None),
        tile_size=getattr(args, "tile_size", None), device=getattr(args, "device", "auto"),
        weights_map_path=getattr(args, "weights_map", None), cog=bool(getattr(args, "cog", False)),
        all_bands=bool(getattr(args, "all_bands", False)), threads=getattr(args, "threads", None),
        ensemble=int(getattr(args, "ensemble", 1) or 1), compression=getattr(args, "compress", "DEFLATE"),
        extent=getattr(args, "extent", None), extent_crs=getattr(args, "extent_crs", None),
        precision=getattr(args, "precision", "fp32") or "fp32", fidelity=bool(getattr(args, "fidelity", False)),
        input_looks=getattr(args, "input_looks", "auto") or "auto")


def cluster_config(args: Any) -> ClusterConfig:
    """Where the blocks run, from --cluster, --block-size and --restart (also used by `batch`)."""
    return ClusterConfig(address=args.cluster, block_px=getattr(args, "block_size", None),
                         restart=bool(getattr(args, "restart", False)))


def say(message: str, command: str = "sr") -> None:
    print(f"mlin {command}: {message}", file=sys.stderr, flush=True)


def run_cluster(job: ClusterRequest) -> int:
    """`sr --cluster`: the blocks on Dask; Ctrl-C keeps the finished blocks for a resume."""
    def work() -> ClusterResult:
        with CancelOnSigint("block") as cancel:
            return superresolve_cluster(job, progress=ProgressBar(), is_cancelled=cancel, say=say)

    result, code = guarded(work, "interrupted; the finished blocks are kept: rerun the same command to resume.")
    if result is None:
        return code
    report(result, [("cluster", result.workers),
                    ("blocks", f"{result.blocks} ({result.reused} reused, {result.computed} computed)")])
    return EXIT_OK


def guarded(work: Any, interrupted: str) -> tuple[Any, int]:
    """(work(), EXIT_OK), or (None, exit code) after saying why it stopped (a user error or Ctrl-C; a
    bug goes on to the entry point, which logs its traceback)."""
    try:
        return work(), EXIT_OK
    except (MlinError, KeyboardInterrupt) as exc:
        return None, exit_code(exc, say, "sr", interrupted)


def check_size(request: SuperResolveRequest) -> None:
    """Refuse an output too large to make (core/limits.py) before the estimate or the run plan it."""
    src = raster_io.open_raster(request.input_path)
    output_grid((src.RasterYSize, src.RasterXSize), check_scale(request.scale))


def report(result: Any, lines: list[tuple[str, str]]) -> None:
    """Warnings to stderr; model, the given lines, output and time to stdout."""
    for warning in result.warnings:
        say(f"warning: {warning}")
    print(f"model:    {result.model}")
    if getattr(result, "route", ""):
        print(f"route:    {result.route}")
    for name, value in lines:
        print(f"{name + ':':<10}{value}")
    print(f"output:   {result.output_path} ({result.width} x {result.height} px, "
          f"scale x{result.scale_x:.4g} / y{result.scale_y:.4g})")
    print(f"time:     {result.seconds:.2f} s ({result.mpx_per_s:.3f} Mpx/s)")
    if getattr(result, "fidelity", None) is not None:
        print(f"fidelity: {result.fidelity.describe()} (area average of the output - input, input units)")


def run(args: Any) -> int:
    """Run `sr` with parsed arguments (an argparse Namespace); returns the exit code."""
    request = request_from_args(args, args.input, args.output)
    code = guarded(lambda: check_size(request), "interrupted.")[1]
    if code != EXIT_OK:
        return code
    if getattr(args, "cluster", None):
        return run_cluster(ClusterRequest(request, cluster_config(args)))
    if request.ensemble > 1:
        say(f"ensemble {request.ensemble}: {request.ensemble} passes, about {request.ensemble}x the time of one pass")
    try:
        est = estimate(request.input_path, request.scale, request.model, request.bands, request.all_bands,
                       request.ensemble, request.device, request.tile_size, request.threads, request.extent,
                       request.extent_crs)
        say(f"estimate: about {est.seconds:.3g} s (from {est.basis})")
    except MlinError:
        pass  # the run itself reports what is wrong, with its full message
    def work() -> Any:
        with CancelOnSigint("tile") as cancel:
            return superresolve(request, progress=ProgressBar(), is_cancelled=cancel)

    result, code = guarded(work, "interrupted; the partial output was removed.")
    if result is None:
        return code
    report(result, [("provider", result.provider)]
           + ([("weights", str(result.weights_map_path))] if result.weights_map_path else []))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m mlin_qgis.core.cli_sr``), same options as `sr`."""
    parser = add_arguments(argparse.ArgumentParser(prog="mlin_qgis sr", description="super-resolve a raster"))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
