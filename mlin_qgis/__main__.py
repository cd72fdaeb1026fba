"""Command line: `python -m mlin_qgis {sr,batch,train,train-aware,evaluate,export,import-onnx,quantize,fit-router} ...`.

Each subcommand lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`;
torch-based ones are imported only when chosen, so `sr` works with numpy, GDAL and onnxruntime alone."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

SUBCOMMANDS = {
    "sr": ("mlin_qgis.core.cli_sr", "super-resolve a raster with an ONNX model (torch-free)"),
    "batch": ("mlin_qgis.core.cli_batch", "super-resolve every raster of a folder or glob (optionally on a Dask cluster)"),
    "train": ("mlin_qgis.ml.train", "train the decoder (and meta-weight network) on a frozen encoder"),
    "train-aware": ("mlin_qgis.ml.train_aware", "train the degradation-aware MLIN (one model reading its input), "
                    "resumable in chunks"),
    "evaluate": ("mlin_qgis.ml.evaluate", "PSNR/SSIM of checkpoints against bicubic, whole-image protocol"),
    "export": ("mlin_qgis.ml.export", "export a checkpoint to the encoder/decoder ONNX pair"),
    "import-onnx": ("mlin_qgis.ml.onnx_import", "read a shipped ONNX pair back into a training checkpoint (.pth)"),
    "quantize": ("mlin_qgis.ml.quantize", "write a model's int8 decoder (decoder.int8.onnx) for --precision int8"),
    "fit-router": ("mlin_qgis.ml.router_fit", "fit the router that `--model auto` uses, on degraded training images"),
}


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m mlin_qgis", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] not in SUBCOMMANDS:
        parser.print_help() if not argv or argv[0] in ("-h", "--help") else parser.parse_args(argv)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module_name, help_text = SUBCOMMANDS[argv[0]]
    module = importlib.import_module(module_name)
    cmd = argparse.ArgumentParser(prog=f"python -m mlin_qgis {argv[0]}", description=help_text)
    module.add_arguments(cmd)
    args = cmd.parse_args(argv[1:])
    from mlin_qgis.core.errors import MlinError

    try:
        return int(module.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MlinError as exc:  # a user error: one line; anything else is a bug and keeps its traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
