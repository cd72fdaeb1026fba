#!/usr/bin/env bash
# Run QGIS's real qgis_process on the freshly built plugin (build/mlin_qgis, `make plugin`) with a
# throw-away QGIS profile, so nothing in the user's own profile is read or changed.
#
#   scripts/qgis_process.sh run mlin:superresolve -- INPUT=in.tif SCALE=2.5 OUTPUT=out.tif
#
# How QGIS 3.22 finds the plugin and its dependencies:
#   QGIS_CUSTOM_CONFIG_PATH=<tmp>    profile folder (settings, enabled plugins) instead of ~/.local/share/QGIS
#   QGIS_PLUGINPATH=<build>          extra folder searched for Python plugins (holds mlin_qgis/)
#   qgis_process.bin plugins enable mlin_qgis   records mlin_qgis=true in the tmp profile's [PythonPlugins]
#   PYTHONPATH=<venv site-packages>  lets QGIS's embedded Python import onnxruntime from .venv
# /usr/bin/qgis_process.bin is called directly: Debian's /usr/bin/qgis_process wrapper passes
# QGIS_OPTS (--noversioncheck) from /etc/default/qgis, which qgis_process rejects.
#
# Environment: MLIN_PLUGIN_BUILD (folder holding mlin_qgis/, default build), QGIS_PROCESS (binary),
# MLIN_QGIS_PROFILE (reuse this profile folder and keep it, e.g. for batch runs), MLIN_PYTHONPATH
# (instead of the venv's site-packages). The exit code is qgis_process's.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PLUGIN_BUILD=$(cd "${MLIN_PLUGIN_BUILD:-$ROOT/build}" 2>/dev/null && pwd) || PLUGIN_BUILD=""
QGIS_PROCESS=${QGIS_PROCESS:-/usr/bin/qgis_process.bin}
if [ -z "$PLUGIN_BUILD" ] || [ ! -f "$PLUGIN_BUILD/mlin_qgis/metadata.txt" ]; then
  echo "qgis_process.sh: no built plugin in ${MLIN_PLUGIN_BUILD:-$ROOT/build}/mlin_qgis; run 'make plugin' first" >&2
  exit 2
fi
if [ ! -x "$QGIS_PROCESS" ]; then
  echo "qgis_process.sh: $QGIS_PROCESS not found; install QGIS (apt-get install qgis) or set QGIS_PROCESS" >&2
  exit 2
fi

if [ -n "${MLIN_QGIS_PROFILE:-}" ]; then
  profile=$MLIN_QGIS_PROFILE
  mkdir -p "$profile"
else
  profile=$(mktemp -d "${TMPDIR:-/tmp}/mlin-qgis-profile.XXXXXX")
  trap 'rm -rf "$profile"' EXIT
fi

if [ -z "${MLIN_PYTHONPATH:-}" ] && [ -x "$ROOT/.venv/bin/python" ]; then
  MLIN_PYTHONPATH=$("$ROOT/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
fi
export QGIS_CUSTOM_CONFIG_PATH="$profile"
export QGIS_PLUGINPATH="$PLUGIN_BUILD${QGIS_PLUGINPATH:+:$QGIS_PLUGINPATH}"
export PYTHONPATH="${MLIN_PYTHONPATH:-}${PYTHONPATH:+:$PYTHONPATH}"
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$profile/runtime}
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

ini="$profile/profiles/default/QGIS/QGIS3.ini"
if ! grep -qs '^mlin_qgis=true' "$ini"; then
  if ! enable_log=$("$QGIS_PROCESS" plugins enable mlin_qgis 2>&1) || ! grep -qs '^mlin_qgis=true' "$ini"; then
    echo "qgis_process.sh: could not enable the plugin mlin_qgis:" >&2
    echo "$enable_log" >&2
    exit 3
  fi
fi

"$QGIS_PROCESS" "$@"
