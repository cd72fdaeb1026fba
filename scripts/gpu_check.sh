#!/usr/bin/env bash
# The GPU check, ready for a machine with an NVIDIA GPU (one command, under 8 minutes):
#   1. say plainly whether a GPU is present (no GPU: exit 0 after saying so; nothing is faked);
#   2. a separate venv (.venv-gpu, seeing the system's QGIS/GDAL) with onnxruntime-gpu and the CUDA 12
#      + cuDNN 9 runtime wheels it needs, from the package index;
#   3. the CUDA tests (pytest -m cuda: CUDA output equals CPU output, the provider that ran is CUDA,
#      IO binding keeps proj on the device);
#   4. one table: output Mpx/s of the default model on CUDA and CPU at x2/x4/x8 on a 512x512 raster.
# Usage: bash scripts/gpu_check.sh   (make gpu-check)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU is present on this machine (nvidia-smi finds none): no GPU rows were measured."
  exit 0
fi
nvidia-smi -L
VENV=${VENV:-.venv-gpu}
[ -x $VENV/bin/python ] || /usr/bin/python3 -m venv --system-site-packages $VENV
$VENV/bin/python -m pip install -q --disable-pip-version-check "numpy<2" onnxruntime-gpu nvidia-cuda-runtime-cu12 \
  nvidia-cublas-cu12 nvidia-cudnn-cu12 nvidia-cufft-cu12 nvidia-curand-cu12 pytest onnx pillow scikit-image pyyaml tqdm
$VENV/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
# the CUDA runtime wheels' libraries on the loader path
LIBS=$($VENV/bin/python -c 'import glob, os, nvidia; print(":".join(sorted({os.path.dirname(p) for d in nvidia.__path__ for p in glob.glob(d + "/*/lib/*.so*")})))')
export LD_LIBRARY_PATH="$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
$VENV/bin/python -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.get_available_providers())'
QT_QPA_PLATFORM=offscreen $VENV/bin/python -m pytest -q -rs -m cuda tests
$VENV/bin/python - <<'PY'
import time
import numpy as np
from mlin_qgis.core.engine import SuperResolver
rng = np.random.default_rng(0)
image = np.clip(0.5 + 0.2 * rng.standard_normal((3, 512, 512)), 0, 1).astype(np.float32)
rows = []
for device in ("cuda", "cpu"):
    engine = SuperResolver(device=device)
    for scale in (2, 4, 8):
        out = (512 * scale, 512 * scale) if device == "cuda" else (128 * scale, 128 * scale)
        img = image if device == "cuda" else image[:, :128, :128]
        engine.upscale(img[:, :64, :64], (64 * scale, 64 * scale))  # warm-up
        t0 = time.perf_counter()
        engine.upscale(img, out, tile_size=512)
        dt = time.perf_counter() - t0
        rows.append((device, engine.provider, scale, out[0] * out[1] / 1e6 / dt))
print("| device | provider | scale | output Mpx/s |")
print("|---|---|---:|---:|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | x{r[2]} | {r[3]:.2f} |")
PY
