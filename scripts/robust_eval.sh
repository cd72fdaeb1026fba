#!/usr/bin/env bash
# The measurements behind the robust model's card and README tables (UC Merced val), run in two
# parallel lanes of one thread each. Usage: bash scripts/robust_eval.sh STAGE
#   export  : ONNX folders of the robust runs (and the robust MLIN with area weights at test time)
#   suite   : the degradation suite (bicubic, bicubic-aliased, blur, jpeg, noise, mixed) at x2/x3/x4/x8,
#             21 val images (the first of each class), every model
#   accept  : all 210 val images at x2/x4 for clean, aliased and JPEG LR: default model, LIIF, 0.3.0
#   funsr   : the FunSR protocol at x2/x3/x4, all 210 val images
#   ensemble: the x8 self-ensemble of the default model, 21 images, x2/x4, clean and aliased
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
VAL=${VAL:-../shared/data/ucmerced/val}
OUT=${OUT:-runs/eval}
DEFAULT=${DEFAULT:-robust=runs/export/robust-mlin}
ev() { $PY -m mlin_qgis evaluate --data "$VAL" --threads 1 "$@"; }
case "${1:?stage}" in
  export)
    for run in robust-mlin robust-mlin-encoder; do
      [ -f runs/$run/checkpoint.pth ] && $PY -m mlin_qgis export --checkpoint runs/$run/checkpoint.pth --out runs/export/$run
    done
    $PY - <<'PY'
from pathlib import Path
from mlin_qgis.ml.export import default_card, export_model
from mlin_qgis.ml.model import load_model, read_checkpoint
ckpt = Path("runs/robust-mlin/checkpoint.pth")
raw = read_checkpoint(ckpt)
model = load_model(ckpt, weighting="area")  # the same trunk, LIIF's area weights instead of the meta net
card = default_card(model, "robust-mlin-area-at-test", raw)
print(export_model(model, "runs/export/robust-mlin-area-at-test", card))
PY
    ;;
  suite)
    models=(--checkpoint liif=models/liif-edsr-div2k --checkpoint mlin-0.3=models/mlin-edsr-ucmerced
            --checkpoint robust=runs/export/robust-mlin)
    [ -d runs/export/robust-mlin-encoder ] && models+=(--checkpoint robust-enc=runs/export/robust-mlin-encoder)
    ev "${models[@]}" --per-class 1 --scales 2,3,4,8 --degradation bicubic,bicubic-aliased,blur --out $OUT/suite-a > $OUT/suite-a.log 2>&1 &
    ev "${models[@]}" --per-class 1 --scales 2,3,4,8 --degradation jpeg,noise,mixed --out $OUT/suite-b > $OUT/suite-b.log 2>&1 &
    wait
    ;;
  accept)
    ev --checkpoint "$DEFAULT" --checkpoint liif=models/liif-edsr-div2k --scales 2,4 \
       --degradation bicubic-aliased,jpeg --out $OUT/accept-a > $OUT/accept-a.log 2>&1 &
    ev --checkpoint "$DEFAULT" --checkpoint liif=models/liif-edsr-div2k --checkpoint mlin-0.3=models/mlin-edsr-ucmerced \
       --checkpoint robust-area=runs/export/robust-mlin-area-at-test --scales 2,4 \
       --degradation bicubic --out $OUT/accept-b/bicubic > $OUT/accept-b.log 2>&1 &
    wait
    ;;
  funsr)
    ev --checkpoint "$DEFAULT" --checkpoint liif=models/liif-edsr-div2k --checkpoint mlin-0.3=models/mlin-edsr-ucmerced \
       --protocol funsr --scales 2,3,4 --out $OUT/funsr > $OUT/funsr.log 2>&1
    ;;
  ensemble)
    ev --checkpoint "$DEFAULT" --per-class 1 --scales 2,4 --degradation bicubic,bicubic-aliased --out $OUT/ens1 > $OUT/ens1.log 2>&1 &
    ev --checkpoint "$DEFAULT" --per-class 1 --scales 2,4 --degradation bicubic,bicubic-aliased --ensemble 8 --out $OUT/ens8 > $OUT/ens8.log 2>&1 &
    wait
    ;;
  *) echo "unknown stage $1" >&2; exit 2 ;;
esac
