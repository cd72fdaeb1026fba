#!/usr/bin/env bash
# The measurements behind the robust model's card and the README tables (UC Merced val), one
# single-threaded job per call so two can run side by side on two cores.
#   bash scripts/robust_eval.sh export RUN            ONNX folder runs/export/RUN of runs/RUN/checkpoint.pth
#   bash scripts/robust_eval.sh area-at-test RUN      the same trunk with LIIF's area weights instead of the meta net
#   bash scripts/robust_eval.sh suite NAME=FOLDER     the degradation suite at x2/x3/x4/x8, 21 images (1 per class)
#   bash scripts/robust_eval.sh accept NAME=FOLDER    all 210 images, x2/x4: aliased and JPEG LR (and clean)
#                                                     (PER_CLASS=5: the first 5 per class, 105 images)
# NAME=FOLDER may be auto=auto (the degradation-aware default reading each image, `--model auto`) or NAME=FOLDER@variant;
# DEGRADATIONS=a,b overrides a stage's list (to split one stage over two processes).
#   bash scripts/robust_eval.sh funsr NAME=FOLDER     the FunSR protocol at x2/x3/x4, all 210 images
#   bash scripts/robust_eval.sh ensemble NAME=FOLDER  the x8 self-ensemble, 21 images, x2/x4, clean and aliased
# Results land in runs/eval/<stage>-<NAME>/; scripts/robustness_report.py and `evaluate merge|paired`
# turn them into tables.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
VAL=${VAL:-../shared/data/ucmerced/val}
OUT=${OUT:-runs/eval}
SUITE=bicubic,bicubic-aliased,blur,jpeg,noise,mixed
stage=${1:?stage}
item=${2:?NAME=FOLDER or RUN}
name=${item%%=*}
mkdir -p "$OUT"
ev() { $PY -m mlin_qgis evaluate --data "$VAL" --threads 1 --checkpoint "$item" "$@"; }
# evaluate writes OUT/NAME/ per degradation only when it gets several; one name gets that folder here
out_for() { case "$1" in *,*) echo "$2" ;; *) echo "$2/$1" ;; esac; }
case "$stage" in
  export) $PY -m mlin_qgis export --checkpoint "runs/$item/checkpoint.pth" --out "runs/export/$item" ;;
  area-at-test)
    $PY - "$item" <<'PY'
import sys
from mlin_qgis.ml.export import default_card, export_model
from mlin_qgis.ml.model import load_model, read_checkpoint
run = sys.argv[1]
ckpt = f"runs/{run}/checkpoint.pth"
model = load_model(ckpt, weighting="area")  # the same trunk, LIIF's area weights instead of the meta net
print(export_model(model, f"runs/export/{run}-area-at-test", default_card(model, f"{run}-area-at-test", read_checkpoint(ckpt))))
PY
    ;;
  suite) d=${DEGRADATIONS:-$SUITE}; ev --per-class 1 --scales 2,3,4,8 --degradation "$d" --out "$(out_for "$d" "$OUT/suite-$name")" ;;
  accept) d=${DEGRADATIONS:-bicubic-aliased,jpeg,bicubic}
    ev --scales 2,4 --degradation "$d" ${PER_CLASS:+--per-class $PER_CLASS} --out "$(out_for "$d" "$OUT/accept-$name")" ;;
  funsr) ev --protocol funsr --scales 2,3,4 ${PER_CLASS:+--per-class $PER_CLASS} --out "$OUT/funsr-$name" ;;
  ensemble) ev --per-class 1 --scales 2,4 --degradation bicubic,bicubic-aliased --ensemble 8 --out "$OUT/ensemble-$name" ;;
  *) echo "unknown stage $stage" >&2; exit 2 ;;
esac
