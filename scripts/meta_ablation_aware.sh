#!/usr/bin/env bash
# Meta weights vs LIIF's area weights under the aware model (issue 30), at a fine-tuning budget: two arms
# from the committed weights that differ only in the meta-weight head (scripts/meta_ablation_aware.py),
# evaluated on the same LR images so the differences are paired.
#   bash scripts/meta_ablation_aware.sh train          both arms side by side, one core each (~35 min)
#   bash scripts/meta_ablation_aware.sh eval ARM DEGS  export the arm (meta or area), evaluate it on all val
#                                                      images at x2/x4 for the comma-separated degradations
#                                                      (one thread; the arms can run on different cores)
#   bash scripts/meta_ablation_aware.sh zero DEGS      the shipped weights with the head zeroed and no training
#                                                      (area weights at test), evaluated the same way; paired
#                                                      in the report with the shipped model's val record
#   bash scripts/meta_ablation_aware.sh report         docs/results/meta_ablation_aware.md
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
VAL=${VAL:-../shared/data/ucmerced/val}
RUN=${RUN:-runs/ablation-aware}
ITS=${ITS:-800}
OUT=${OUT:-runs/eval/meta-ablation-aware}
SHIPPED=${SHIPPED:-docs/results/aware_val210_chunk4}  # the shipped model's val record (method `auto`)
DEGS=(bicubic bicubic-aliased jpeg)
case "${1:?stage: train, eval or report}" in
  train)
    core=0
    for arm in meta area; do
      OMP_NUM_THREADS=1 taskset -c $core $PY scripts/meta_ablation_aware.py --arm $arm --its "$ITS" \
        --out "$RUN/$arm" > "$RUN-$arm.log" 2>&1 &
      core=$(( (core + 1) % $(nproc) ))
    done
    wait ;;
  eval)
    arm=${2:?arm: meta or area}
    d=${3:?comma-separated degradations}
    case "$d" in *,*) out="$OUT/$arm" ;; *) out="$OUT/$arm/$d" ;; esac  # evaluate adds NAME/ only for several
    [ -f "runs/export/ablation-aware-$arm/decoder.onnx" ] || \
      $PY -m mlin_qgis export-aware --weights "$RUN/$arm/weights.fp16.pth" --out "runs/export/ablation-aware-$arm"
    $PY -m mlin_qgis evaluate --data "$VAL" --threads 1 --scales 2,4 ${PER_CLASS:+--per-class $PER_CLASS} \
      --checkpoint "$arm=runs/export/ablation-aware-$arm" --degradation "$d" --out "$out" ;;
  zero)
    d=${2:?comma-separated degradations}
    case "$d" in *,*) out="$OUT/area0" ;; *) out="$OUT/area0/$d" ;; esac
    $PY scripts/meta_ablation_aware.py --arm area --its 0 --out "$RUN/area0"
    $PY -m mlin_qgis export-aware --weights "$RUN/area0/weights.fp16.pth" --out runs/export/ablation-aware-area0
    $PY -m mlin_qgis evaluate --data "$VAL" --threads 1 --scales 2,4 ${PER_CLASS:+--per-class $PER_CLASS} \
      --checkpoint area0=runs/export/ablation-aware-area0 --degradation "$d" --out "$out" ;;
  report)
    report=docs/results/meta_ablation_aware.md
    {
      echo "# Meta weights vs area weights under the aware model (same budget, fine-tuning)"
      echo
      echo "\`make meta-ablation-aware\` (\`scripts/meta_ablation_aware.sh train\`, \`eval\`, \`report\`). Two arms from the"
      echo "committed weights (iteration 9100) that differ in one thing: the \`area\` arm zeroes the last layer of"
      echo "every expert's meta-weight head and keeps it there, so its decoder mixes the four neighbours by LIIF's"
      echo "areas exactly; the \`meta\` arm keeps and trains its head. Both then train $ITS joint iterations with the"
      echo "same crops, batches, rates and seed (experts and gate; the estimator fixed), one CPU core each. UC"
      echo "Merced val, LR made by each degradation, paired per image (the same LR for both)."
      echo
      echo "Monitor (8 dev crops, PSNR): \`$RUN/{meta,area}/monitor.jsonl\`, copied to"
      echo "\`docs/results/meta_ablation_aware/\`; the area arm's first line is the zero-shot swap."
      for d in "${DEGS[@]}"; do
        f="$OUT/$d/results.json"
        [ -f "$OUT/meta/$d/results.json" ] && [ -f "$OUT/area/$d/results.json" ] || continue
        $PY -m mlin_qgis evaluate merge "$OUT/$d" "$OUT/meta/$d/results.json" "$OUT/area/$d/results.json" > /dev/null
        echo
        echo "## LR: $d ($($PY -c "import json,sys;print(json.load(open(sys.argv[1]))['n_images'])" "$f") images)"
        echo
        $PY -m mlin_qgis evaluate table "$f" meta="aware MLIN (meta weights)" area="ablation (area weights)"
        echo
        $PY -m mlin_qgis evaluate paired "$f" meta area
      done
      echo
      echo "## At test: the shipped weights with area weights, no training (\`zero\`)"
      echo
      echo "The shipped model (\`auto\`, its val record in \`$SHIPPED\`) against the same weights with every"
      echo "meta-weight head's last layer zeroed (\`area0\`): what the head contributes to the model as shipped."
      for d in "${DEGS[@]}"; do
        [ -f "$OUT/area0/$d/results.json" ] && [ -f "$SHIPPED/$d/results.json" ] || continue
        $PY -m mlin_qgis evaluate merge "$OUT/zero-$d" "$SHIPPED/$d/results.json" "$OUT/area0/$d/results.json" > /dev/null
        echo
        echo "### LR: $d"
        echo
        $PY -m mlin_qgis evaluate paired "$OUT/zero-$d/results.json" auto area0
      done
    } > "$report"
    mkdir -p docs/results/meta_ablation_aware
    cp "$RUN"/meta/monitor.jsonl docs/results/meta_ablation_aware/meta_monitor.jsonl
    cp "$RUN"/area/monitor.jsonl docs/results/meta_ablation_aware/area_monitor.jsonl
    echo "written: $report" ;;
  *) echo "unknown stage $1" >&2; exit 2 ;;
esac
