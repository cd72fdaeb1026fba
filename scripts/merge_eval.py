"""Merge `evaluate` results.json files that cover the same images and scales into one table.

Usage: .venv/bin/python scripts/merge_eval.py OUT_DIR A/results.json B/results.json ..."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from mlin_qgis.ml.evaluate import _markdown, merge_results, write_results

if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    merged = merge_results([json.loads(Path(p).read_text()) for p in sys.argv[2:]])
    write_results(merged, sys.argv[1])
    print(_markdown(merged))
