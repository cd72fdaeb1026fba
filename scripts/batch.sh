#!/usr/bin/env bash
# Super-resolve every raster of a folder with qgis_process and the built plugin (`make batch`).
#
#   scripts/batch.sh IN_FOLDER OUT_FOLDER SCALE      -> OUT_FOLDER/<name>_x<SCALE>.tif
#
# Optional environment: MODEL (index of a shipped model, see `scripts/qgis_process.sh help mlin:superresolve`),
# MODEL_FILE (custom encoder.onnx), DEVICE (0 auto, 1 cpu, 2 cuda), TILE_SIZE.
# Keeps going when one file fails; exits 1 if any failed, 2 on bad arguments.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -ne 3 ] || [ -z "$1" ] || [ -z "$2" ] || [ -z "$3" ]; then
  echo "usage: $0 IN_FOLDER OUT_FOLDER SCALE   (make batch IN=... OUT=... SCALE=...)" >&2
  exit 2
fi
in_dir=$1 out_dir=$2 scale=$3
if [ ! -d "$in_dir" ]; then echo "batch.sh: input folder $in_dir does not exist" >&2; exit 2; fi
mkdir -p "$out_dir" || exit 2

# One throw-away profile for the whole batch: the plugin is enabled once, not per file.
MLIN_QGIS_PROFILE=$(mktemp -d "${TMPDIR:-/tmp}/mlin-qgis-batch.XXXXXX")
export MLIN_QGIS_PROFILE
trap 'rm -rf "$MLIN_QGIS_PROFILE"' EXIT

extra=()
[ -n "${MODEL:-}" ] && extra+=("MODEL=$MODEL")
[ -n "${MODEL_FILE:-}" ] && extra+=("MODEL_FILE=$MODEL_FILE")
[ -n "${DEVICE:-}" ] && extra+=("DEVICE=$DEVICE")
[ -n "${TILE_SIZE:-}" ] && extra+=("TILE_SIZE=$TILE_SIZE")

shopt -s nullglob nocaseglob
files=("$in_dir"/*.tif "$in_dir"/*.tiff "$in_dir"/*.png "$in_dir"/*.jpg "$in_dir"/*.jpeg "$in_dir"/*.jp2 "$in_dir"/*.vrt "$in_dir"/*.img)
shopt -u nocaseglob
if [ ${#files[@]} -eq 0 ]; then echo "batch.sh: no rasters (*.tif, *.png, *.jpg, *.jp2, *.vrt, *.img) in $in_dir" >&2; exit 2; fi

ok=0 failed=()
for f in "${files[@]}"; do
  stem=$(basename "${f%.*}")
  out="$out_dir/${stem}_x${scale}.tif"
  echo "batch: $f -> $out"
  if "$ROOT/scripts/qgis_process.sh" run mlin:superresolve -- "INPUT=$f" "SCALE=$scale" "OUTPUT=$out" "${extra[@]}"; then
    ok=$((ok + 1))
  else
    failed+=("$f")
  fi
done
echo "batch: $ok of ${#files[@]} rasters super-resolved into $out_dir"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'batch: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
