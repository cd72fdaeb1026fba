#!/usr/bin/env bash
# Meta weights vs LIIF's area weights under the robust training, at the same budget: two runs that
# differ only in `weighting` (configs/ablation_robust_meta.yaml, configs/ablation_robust_area.yaml),
# evaluated on the same LR images so the differences are paired.
#   bash scripts/meta_ablation.sh train            both runs side by side, one thread each (~35 min)
#   bash scripts/meta_ablation.sh eval DEGRADATIONS  one single-threaded evaluation of both checkpoints,
#                                                  x2/x4, the first PER_CLASS (default 3) val images of
#                                                  each class; e.g. `eval bicubic-aliased` and
#                                                  `eval jpeg,bicubic` side by side on two cores
#   bash scripts/meta_ablation.sh report           docs/results/meta_ablation_robust.md
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
VAL=${VAL:-../shared/data/ucmerced/val}
OUT=${OUT:-runs/eval/meta-ablation}
DEGS=(bicubic bicubic-aliased jpeg)
case "${1:?stage: train, eval or report}" in
  train)
    for w in meta area; do
      $PY -m mlin_qgis train --config "configs/ablation_robust_$w.yaml" > "runs/ablation_robust_$w.log" 2>&1 &
    done
    wait ;;
  eval)
    d=${2:?comma-separated degradations}
    case "$d" in *,*) out="$OUT" ;; *) out="$OUT/$d" ;; esac  # evaluate adds NAME/ only for several
    for w in meta area; do  # ONNX folders: ~4x faster than the torch checkpoints on one thread
      [ -f "runs/export/ablation-robust-$w/decoder.onnx" ] || \
        $PY -m mlin_qgis export --checkpoint "runs/ablation-robust-$w/checkpoint.pth" --out "runs/export/ablation-robust-$w"
    done
    $PY -m mlin_qgis evaluate --data "$VAL" --threads 1 --scales 2,4 --per-class "${PER_CLASS:-3}" \
      --checkpoint meta=runs/export/ablation-robust-meta --checkpoint area=runs/export/ablation-robust-area \
      --degradation "$d" --out "$out" ;;
  report)
    report=docs/results/meta_ablation_robust.md
    {
      echo "# Meta weights vs area weights under the robust training (same budget)"
      echo
      echo "\`bash scripts/meta_ablation.sh train && bash scripts/meta_ablation.sh eval ... && bash scripts/meta_ablation.sh report\`."
      echo "Two runs that differ in one config line, \`weighting\` (configs/ablation_robust_meta.yaml,"
      echo "configs/ablation_robust_area.yaml): the same start (the clean MLIN 0.3.0 trunk; the area run drops its"
      echo "meta network), frozen LIIF encoder, robust degradation mix, seed, crops, batches, 800 iterations on one"
      echo "CPU thread each. UC Merced val, LR made by each degradation, paired per image (same LR for both)."
      for d in "${DEGS[@]}"; do
        f="$OUT/$d/results.json"
        [ -f "$f" ] || continue
        echo
        echo "## LR: $d ($($PY -c "import json,sys;print(json.load(open(sys.argv[1]))['n_images'])" "$f") images)"
        echo
        $PY -m mlin_qgis evaluate table "$f" meta="MLIN (meta weights)" area="ablation (area weights)"
        echo
        $PY -m mlin_qgis evaluate paired "$f" meta area
      done
    } > "$report"
    echo "written: $report" ;;
  *) echo "unknown stage $1" >&2; exit 2 ;;
esac
