"""`python -m mlin_qgis sr INPUT OUTPUT --scale S ...`: the command-line front of the pipeline.

Exit codes: 0 done, 2 bad input or unusable model (MlinError), 130 cancelled (Ctrl-C). The first
Ctrl-C asks the run to stop after the current tile; a second one stops at once. Either way the
partial output is removed. The progress bar is plain text on stderr (no tqdm in the core).
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any, TextIO

from .errors import MlinCancelled, MlinError
from .pipeline import SuperResolveRequest, estimate, superresolve

EXIT_OK, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 2, 130


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
    """'name (default): when to use it; name: ...' from the installed models' cards."""
    from .models import available_models

    try:
        entries = available_models()
    except Exception as exc:  # a help text must never fail
        return f"(cannot list them: {exc})"
    if not entries:
        return "none"
    return "; ".join(f"{e.name}{' (default)' if i == 0 else ''}: {e.card.description or e.card.method}"
                     for i, e in enumerate(entries))


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Declare the `sr` options on ``parser`` (mlin_qgis.__main__ makes the sub-command)."""
    parser.add_argument("input", help="input raster (GeoTIFF or any raster GDAL reads)")
    parser.add_argument("output", help="output GeoTIFF (.tif); written atomically")
    parser.add_argument("--scale", required=True, help="enlargement factor > 1, any real number (e.g. 2.5)")
    parser.add_argument("--model", default=None, help="installed model name, model folder or .onnx path; "
                        "installed: " + _installed_models_help())
    parser.add_argument("--bands", type=_bands, default=None,
                        help="3 band numbers fed as R,G,B (e.g. 4,3,2) or 1 band (grey); default: the "
                             "Red/Green/Blue bands, else 1,2,3")
    parser.add_argument("--all-bands", action="store_true",
                        help="process every non-alpha band, in groups of three (left-overs as grey)")
    parser.add_argument("--tile-size", type=int, default=None, help="LR tile core size in pixels "
                        "(default 256 on CPU, 512 on CUDA, smaller at large scales)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: all cores)")
    parser.add_argument("--ensemble", type=int, choices=[1, 8], default=1,
                        help="8: average the 8 flips/transposes of the input (best quality, 8x the time; "
                             "see the model card for the measured gain); default 1")
    parser.add_argument("--extent", type=_extent, default=None, metavar="XMIN,YMIN,XMAX,YMAX",
                        help="area of interest in the raster's CRS (or --extent-crs): only that part is "
                             "super-resolved, snapped to input pixels; it equals the same window of a whole run")
    parser.add_argument("--extent-crs", default=None, metavar="CRS", help="CRS of --extent, e.g. EPSG:4326")
    parser.add_argument("--cog", action="store_true", help="write a Cloud Optimized GeoTIFF")
    parser.add_argument("--compress", default="DEFLATE", choices=["DEFLATE", "ZSTD", "LZW", "NONE"],
                        help="GeoTIFF compression (default DEFLATE with a predictor, which every GIS tool reads; "
                             "ZSTD is smaller and faster where readers support it)")
    parser.add_argument("--weights-map", default=None, metavar="PATH",
                        help="also write a float32 GeoTIFF of max |weights - area_weights| per output pixel")
    return parser


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


def run(args: Any) -> int:
    """Run `sr` with parsed arguments (an argparse Namespace); returns the exit code."""
    cancel = {"requested": False}

    def on_sigint(signum: int, frame: Any) -> None:
        if cancel["requested"]:
            raise KeyboardInterrupt
        cancel["requested"] = True
        sys.stderr.write("\ncancelling after the current tile (Ctrl-C again to stop now)...\n")
        sys.stderr.flush()

    request = SuperResolveRequest(
        input_path=args.input, output_path=args.output, scale=args.scale,
        model=getattr(args, "model", None), bands=getattr(args, "bands", None),
        tile_size=getattr(args, "tile_size", None), device=getattr(args, "device", "auto"),
        weights_map_path=getattr(args, "weights_map", None), cog=bool(getattr(args, "cog", False)),
        all_bands=bool(getattr(args, "all_bands", False)), threads=getattr(args, "threads", None),
        ensemble=int(getattr(args, "ensemble", 1) or 1), compression=getattr(args, "compress", "DEFLATE"),
        extent=getattr(args, "extent", None), extent_crs=getattr(args, "extent_crs", None))
    if request.ensemble > 1:
        print(f"mlin sr: ensemble {request.ensemble}: {request.ensemble} passes, about {request.ensemble}x the "
              "time of one pass", file=sys.stderr)
    try:
        est = estimate(request.input_path, request.scale, request.model, request.bands, request.all_bands,
                       request.ensemble, request.device, request.tile_size, request.threads)
        print(f"mlin sr: estimate: about {est.seconds:.3g} s (from {est.basis})", file=sys.stderr)
    except MlinError:
        pass  # the run itself reports what is wrong, with its full message
    previous = None
    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: Ctrl-C then raises KeyboardInterrupt as usual
        previous = None
    try:
        result = superresolve(request, progress=ProgressBar(), is_cancelled=lambda: cancel["requested"])
    except MlinCancelled as exc:
        print(f"mlin sr: {exc}", file=sys.stderr)
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        print("mlin sr: interrupted; the partial output was removed.", file=sys.stderr)
        return EXIT_CANCELLED
    except MlinError as exc:
        print(f"mlin sr: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    for warning in result.warnings:
        print(f"mlin sr: warning: {warning}", file=sys.stderr)
    print(f"model:    {result.model}")
    print(f"provider: {result.provider}")
    print(f"output:   {result.output_path} ({result.width} x {result.height} px, "
          f"scale x{result.scale_x:.4g} / y{result.scale_y:.4g})")
    if result.weights_map_path:
        print(f"weights:  {result.weights_map_path}")
    print(f"time:     {result.seconds:.2f} s ({result.mpx_per_s:.3f} Mpx/s)")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m mlin_qgis.core.cli_sr``), same options as `sr`."""
    parser = add_arguments(argparse.ArgumentParser(prog="mlin_qgis sr", description="super-resolve a raster"))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
