#!/usr/bin/env bash
# One idempotent set-up for a fresh Debian machine (root, no GPU): Debian's QGIS + GDAL, then a
# virtual environment `.venv` that sees them (--system-site-packages) and holds the Python packages.
# Safe to run every time: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

SYS_PY=/usr/bin/python3
missing=()
[ -x /usr/bin/qgis_process.bin ] || missing+=(qgis qgis-providers)
$SYS_PY -c "import qgis.core" 2>/dev/null || missing+=(python3-qgis)
$SYS_PY -c "from osgeo import gdal" 2>/dev/null || missing+=(python3-gdal)
command -v gdalinfo >/dev/null 2>&1 || missing+=(gdal-bin)
$SYS_PY -c "import ensurepip, venv" 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]} (qgis python3-qgis qgis-providers gdal-bin python3-gdal)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends \
    qgis python3-qgis qgis-providers gdal-bin python3-gdal python3-venv >/dev/null
fi

# torch: the CPU wheel that lies on this machine kind's disk for Python 3.11; any other Python takes
# the newest release pip allows (checked, not assumed).
py_minor=$($SYS_PY -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if [ "$py_minor" = "3.11" ]; then torch_req="torch==2.13.0"; else torch_req="torch"; fi

stamp=.venv/.mlin-installed
want="$(cat requirements.txt requirements-dev.txt pyproject.toml) $torch_req $py_minor"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || $SYS_PY -m venv --system-site-packages .venv
echo "setup: installing Python packages into .venv ($torch_req)"
.venv/bin/python -m pip install -q --disable-pip-version-check "$torch_req" -r requirements-dev.txt
# the project itself, editable (console script `mlin`; no sys.path edits anywhere)
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
.venv/bin/python -c "import torch, onnx, onnxruntime, numpy, skimage, yaml; from osgeo import gdal; import qgis.core" \
  || { echo "setup: the environment is incomplete after install (see above)" >&2; exit 1; }
printf '%s' "$want" > "$stamp"
