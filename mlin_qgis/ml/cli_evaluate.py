"""`python -m mlin_qgis evaluate [run|merge|table|paired] ...`: the evaluation (evaluate.py) and the
reports read from its results (reports.py), behind one command so the options stay where users know them."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from mlin_qgis.core.errors import ConfigError, MlinError
from mlin_qgis.ml.degradation import suite_degradation, suite_names
from mlin_qgis.ml.evaluate import EvalConfig, evaluate, markdown, read_results, write_results
from mlin_qgis.ml.methods import parse_checkpoint_arg
from mlin_qgis.ml.protocols import PROTOCOLS, scale_key
from mlin_qgis.ml.reports import merge_results, paired_differences, paired_markdown, quality_table

ACTIONS = ("run", "merge", "table", "paired")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `python -m mlin_qgis evaluate` (and its merge/table/paired actions)."""
    defaults = EvalConfig()
    parser.add_argument("action", nargs="?", default="run", choices=ACTIONS,
                        help="run (default): evaluate checkpoints; merge OUT A.json B.json ...: one table from "
                             "runs of other methods on the same images; table RESULTS [NAME=LABEL ...]: the "
                             "README table; paired RESULTS A B: paired differences with standard errors")
    parser.add_argument("inputs", nargs="*", help="the action's files and names (see above)")
    parser.add_argument("--checkpoint", action="append", default=None, metavar="[NAME=]CKPT",
                        help="checkpoint (.pth) or exported model folder (encoder.onnx + decoder.onnx) to evaluate "
                             "(repeatable; FOLDER/decoder.int8.onnx: its int8 decoder); NAME defaults to the file or folder name")
    parser.add_argument("--data", default=None, help="folder of images (flat or <class>/ subfolders)")
    parser.add_argument("--scales", default=",".join(scale_key(s) for s in defaults.scales),
                        help="comma-separated scales > 1, e.g. 2,2.5,3,4 (default %(default)s)")
    parser.add_argument("--split", default=defaults.split, help="split name in --split-file, e.g. val")
    parser.add_argument("--split-file", default=defaults.split_file, help="JSON listing the splits")
    parser.add_argument("--limit", type=int, default=defaults.limit, help="evaluate only the first N images")
    parser.add_argument("--per-class", type=int, default=None,
                        help="evaluate only the first N images of each class folder (a stratified subset)")
    parser.add_argument("--out", default=defaults.out_dir, help="folder for results.json and results.md")
    parser.add_argument("--chunk", type=int, default=defaults.chunk, help="query points per decoder call")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's default)")
    parser.add_argument("--degradation", default="bicubic",
                        help="how LR is made, one name or several comma-separated (one table each, in "
                             "OUT/NAME/ when several): " + ", ".join(suite_names()) + " (default %(default)s)")
    parser.add_argument("--ensemble", type=int, choices=[1, 8], default=1,
                        help="8: run exported model folders with the x8 flip/transpose self-ensemble")
    parser.add_argument("--protocol", default="mlin", choices=PROTOCOLS,
                        help="mlin: whole images (default); funsr: FunSR's 48x48-LR centre-crop protocol")
    parser.add_argument("--fidelity", action="store_true",
                        help="also score each method (and bicubic) with the fidelity correction applied to its "
                             "output (as `sr --fidelity`), as NAME+fidelity: paired PSNR/SSIM with and without it "
                             "(`evaluate paired RESULTS NAME+fidelity NAME`)")


def _report(action: str, inputs: list[str]) -> str:
    """The merge, table and paired actions: read results, write nothing but merge's files."""
    if action == "merge":
        if len(inputs) < 3:
            raise ConfigError("evaluate merge OUT_DIR A/results.json B/results.json ...")
        merged = merge_results([read_results(p) for p in inputs[1:]])
        write_results(merged, inputs[0])
        return markdown(merged)
    if action == "table":
        if not inputs:
            raise ConfigError("evaluate table RESULTS_JSON [NAME=LABEL ...]")
        results = read_results(inputs[0])
        labels = dict(item.split("=", 1) for item in inputs[1:] if "=" in item)
        return f"{results['n_images']} images from {results['data_dir']}\n\n" + quality_table(results, labels)
    if len(inputs) != 3:
        raise ConfigError("evaluate paired RESULTS_JSON METHOD_A METHOD_B")
    return paired_markdown(paired_differences(read_results(inputs[0]), inputs[1], inputs[2]), inputs[1], inputs[2])


def _checkpoints(values: list[str]) -> dict[str, Path]:
    """--checkpoint values by name; two of one name are refused (the table would hide one)."""
    checkpoints: dict[str, Path] = {}
    for value in values:
        name, path = parse_checkpoint_arg(value)
        if name in checkpoints:
            raise ConfigError(f"two checkpoints are named {name!r}; name them with NAME=CKPT")
        checkpoints[name] = path
    return checkpoints


def run(args: argparse.Namespace) -> int:
    """CLI entry: evaluate (or report), print the table on stdout, return 0; on bad input say why, return 2."""
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        action = getattr(args, "action", "run")
        if action != "run":
            print(_report(action, list(args.inputs)))
            return 0
        if not args.checkpoint or not args.data:
            raise ConfigError("evaluate needs --checkpoint (at least one) and --data")
        checkpoints = _checkpoints(args.checkpoint)
        names = [n.strip() for n in str(args.degradation).split(",") if n.strip()]
        for name in names:
            suite_degradation(name, 2.0, 0)  # all names checked before the first slow run
        for name in names:
            out = Path(args.out) / name if args.out and len(names) > 1 else args.out
            results = evaluate(checkpoints, args.data, args.scales, split=args.split, split_file=args.split_file,
                               limit=args.limit, out_dir=out, chunk=args.chunk, per_class=args.per_class,
                               degradation=name, protocol=args.protocol, ensemble=args.ensemble,
                               fidelity=getattr(args, "fidelity", False))
            print(markdown(results))
            if out:
                print(f"results written to {Path(out) / 'results.json'} and results.md")
    except MlinError as exc:
        print(f"mlin_qgis evaluate: error: {exc}", file=sys.stderr)
        return 2
    return 0
