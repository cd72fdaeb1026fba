"""Command line: `python -m mlin_qgis {sr,batch,train,train-aware,evaluate,export,export-aware,import-onnx,quantize} ...`.

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
    "train": ("mlin_qgis.ml.train", "train the decoder and meta-weight network, the encoder frozen or "
              "fine-tuned (train_encoder; the default model fine-tuned it)"),
    "train-aware": ("mlin_qgis.ml.train_aware", "train the degradation-aware MLIN (one model reading its input), "
                    "resumable in chunks"),
    "evaluate": ("mlin_qgis.ml.cli_evaluate", "PSNR/SSIM/consistency of checkpoints against bicubic, whole-image "
                 "protocol; merge/table/paired reports"),
    "export": ("mlin_qgis.ml.export", "export a checkpoint to the encoder/decoder ONNX pair"),
    "export-aware": ("mlin_qgis.ml.export_aware", "export a degradation-aware model (train-aware) to its model folder"),
    "import-onnx": ("mlin_qgis.ml.onnx_import", "read a shipped ONNX pair back into a training checkpoint (.pth)"),
    "quantize": ("mlin_qgis.ml.quantize", "write a model's int8 decoder (decoder.int8.onnx) for --precision int8"),
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
    command = argv[0]
    module_name, help_text = SUBCOMMANDS[command]

    def work() -> int:
        module = importlib.import_module(module_name)
        cmd = argparse.ArgumentParser(prog=f"python -m mlin_qgis {command}", description=help_text)
        module.add_arguments(cmd)
        return int(module.run(cmd.parse_args(argv[1:])))

    # Every way out (user error, missing package, Ctrl-C, bug) is one line on stderr: core/exits.py.
    from mlin_qgis.core.exits import run_guarded

    return run_guarded(work, command)


if __name__ == "__main__":
    sys.exit(main())
