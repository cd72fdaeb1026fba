"""`python -m mlin_qgis batch IN_FOLDER_OR_GLOB OUT_FOLDER --scale S [--cluster ...] [sr options]`.

Every raster of the folder (or matching the glob) is super-resolved into OUT_FOLDER under its own name
(``.tif``); outputs already complete are skipped, so rerunning a batch continues it. With ``--cluster``
one Dask cluster serves the whole batch (and each file resumes its finished blocks). Exit codes: 0 all
written or skipped, 2 at least one file failed (each is named, the others are written), 130 cancelled.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from .batch import DONE, SKIPPED, find_inputs, run_batch
from .cli_sr import (
    CancelOnSigint,
    ProgressBar,
    add_cluster_arguments,
    add_options,
    cluster_config,
    request_from_args,
)
from .cli_sr import say as _say
from .errors import MlinError
from .exits import EXIT_BAD_INPUT, EXIT_OK, exit_code
from .pipeline import superresolve


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("inputs", help="folder of rasters (not recursive) or a quoted glob such as 'scenes/*.tif'")
    parser.add_argument("out_folder", help="existing folder for the outputs (named after the inputs, .tif)")
    add_options(parser)
    add_cluster_arguments(parser)
    return parser


def say(message: str) -> None:
    _say(message, "batch")


def run(args: Any) -> int:
    try:
        inputs = find_inputs(args.inputs)
    except MlinError as exc:
        return exit_code(exc, say, "batch")
    out_folder = Path(args.out_folder).expanduser()
    say(f"{len(inputs)} raster(s) from {args.inputs} into {out_folder}")
    try:
        with CancelOnSigint("block" if args.cluster else "tile") as cancel, contextlib.ExitStack() as stack:
            if args.cluster:
                from .cluster import ClusterSession, superresolve_on_cluster

                session = stack.enter_context(ClusterSession(cluster_config(args)))

                def run_one(request: Any) -> Any:
                    return superresolve_on_cluster(request, session, progress=ProgressBar(), is_cancelled=cancel,
                                                   say=say)
            else:
                def run_one(request: Any) -> Any:
                    return superresolve(request, progress=ProgressBar(), is_cancelled=cancel)

            result = run_batch(inputs, out_folder, lambda src, out: request_from_args(args, src, out), run_one, say,
                               overwrite=bool(getattr(args, "restart", False)))
    except (MlinError, KeyboardInterrupt) as exc:  # a bug goes on to the entry point, which logs it
        return exit_code(exc, say, "batch",
                         "interrupted; outputs already written are kept: rerun the same command to continue.")
    say(f"{result.count(DONE)} written, {result.count(SKIPPED)} skipped (already complete), "
        f"{len(result.failed)} failed")
    for item in result.failed:
        print(f"failed: {item.input}: {item.message}", file=sys.stderr)
    return EXIT_BAD_INPUT if result.failed else EXIT_OK
