#!/usr/bin/env bash
# One chunk of the degradation-aware MLIN on a lent GPU (the `device` tool), in at most 9 minutes.
#
# Here, first:   bash scripts/train_gpu.sh prepare    (fills .gpu/, ignored by git, < 32 MiB: a class-balanced
#                                                     subset of the `fit` split, the latest chunk weights
#                                                     and the official LIIF, the anchored stage's teacher)
# Then, with the device tool, carry [".gpu"] and run:  bash scripts/train_gpu.sh run
# The weights come back under $OUT/run/weights.fp16.pth with the monitor; commit them as the next chunk
# (checkpoints/aware-mlin.fp16.pth, docs/results/training/aware-mlin/monitor.jsonl).
#
# Same config as the CPU chunks (configs/aware_mlin.yaml): on CUDA it uses cuda_batch_size (32), bf16
# autocast and the data on the device. Estimate, not measured (no GPU has been lent yet): the step is
# launch-bound (one mixed forward per sample), ~0.15-0.3 s per batch-32 iteration on an H100, so 8.5
# minutes buy roughly 1,700-3,400 iterations of batch 32, i.e. 7,000-14,000 CPU-sized (batch 8) ones.
set -euo pipefail
cd "$(dirname "$0")/.."
WEIGHTS=checkpoints/aware-mlin.fp16.pth
case "${1:-}" in
  prepare)
    src=../shared/data/ucmerced/train
    rm -rf .gpu && mkdir -p .gpu/train .gpu/val
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    python3 - <<'PY'
import json, shutil
from pathlib import Path
split = json.load(open("configs/splits/ucmerced_dev.json"))
by = {}
for rel in split["fit"]:
    by.setdefault(rel.split("/")[0], []).append(rel)
budget, used = 24 * 2**20, 0
rounds = max(len(v) for v in by.values())
for i in range(rounds):  # round-robin over classes until the carry budget is used
    for cls in sorted(by):
        if i < len(by[cls]):
            src = Path("../shared/data/ucmerced/train") / by[cls][i]
            if used + src.stat().st_size > budget:
                break
            dst = Path(".gpu/train") / by[cls][i]
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
            used += src.stat().st_size
    else:
        continue
    break
print(f"prepared {sum(1 for _ in Path('.gpu/train').rglob('*.png'))} training images, {used / 2**20:.1f} MiB")
PY
    for cls in $(ls ../shared/data/ucmerced/val | head -8); do mkdir -p .gpu/val/$cls; cp "$(ls -d ../shared/data/ucmerced/val/$cls/*.png | head -1)" .gpu/val/$cls/; done
    [ -f "$WEIGHTS" ] && cp "$WEIGHTS" .gpu/init.fp16.pth
    cp ../shared/weights/edsr-baseline-liif.pth .gpu/liif.pth  # the anchored stage's teacher (6 MB)
    du -sh .gpu ;;
  run)
    : "${OUT:?run this through the device tool (it sets OUT)}"
    python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print(torch.__version__, torch.cuda.get_device_name(0))"
    init=(); [ -f .gpu/init.fp16.pth ] && init=(--init-weights .gpu/init.fp16.pth)
    PYTHONPATH=. timeout 540 python3 -m mlin_qgis train-aware --config configs/aware_mlin.yaml --device cuda \
      --data-root .gpu/train --split none --val-root .gpu/val --run-dir "$OUT/run" --minutes 8.0 --teacher .gpu/liif.pth "${init[@]}" \
      2>&1 | tee "$OUT/train.log"
    rm -f "$OUT/run/checkpoint.pth"  # the optimizer stays behind: only weights and monitor come back
    ls -la "$OUT/run" ;;
  *) echo "usage: bash scripts/train_gpu.sh prepare|run" >&2; exit 2 ;;
esac
