#!/usr/bin/env bash
# Torch-free device test, as a Raspberry Pi would have it.
#
#   tests/device/run.sh [BUNDLE]          (default: runs/fashion-mnist/bundle; `make test-device`)
#
# 1. Creates (once) a separate venv .venv-device with only numpy<2, tflite-runtime 2.14.0 and pillow;
#    pocketvit itself is not installed there, only put on PYTHONPATH (no dependencies, no torch).
# 2. In the main venv (.venv), records the top-1 labels of the bundle's litert target (ai_edge_litert)
#    on seeded images.
# 3. In .venv-device, loads the same litert target through pocketvit.runtime, which must fall back to
#    tflite_runtime, and checks torch is not importable and the labels are the same.
#
# Environment: PYTHON (default python3.11), MAIN_PY (default .venv/bin/python),
# DEVICE_VENV (default .venv-device). Exit codes: 0 ok, 1 check failed, 2 usage / missing bundle,
# 77 the package index cannot be reached (the venv could not be built).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUNDLE=${1:-$ROOT/runs/fashion-mnist/bundle}
PYTHON=${PYTHON:-python3.11}
MAIN_PY=${MAIN_PY:-$ROOT/.venv/bin/python}
DEVICE_VENV=${DEVICE_VENV:-$ROOT/.venv-device}
REQS=("numpy<2" "tflite-runtime==2.14.0" "pillow")
STAMP="$DEVICE_VENV/.pocketvit-device"

if [ ! -f "$BUNDLE/manifest.json" ]; then
    echo "error: no bundle at $BUNDLE (run make demo first, or pass a bundle folder with a litert target)" >&2
    exit 2
fi
if ! grep -q '"runtime": "litert"' "$BUNDLE/manifest.json"; then
    echo "error: $BUNDLE has no litert target; build it with export.targets including litert" >&2
    exit 2
fi
[ -x "$MAIN_PY" ] || { echo "error: $MAIN_PY not found; run make venv first" >&2; exit 2; }

index_reachable() {
    # The index pip would use (PIP_INDEX_URL / pip config), else PyPI; a local file:// index counts.
    "$MAIN_PY" - <<'PY'
import os, subprocess, sys, urllib.request
base = os.environ.get("PIP_INDEX_URL", "")
if not base:
    try:
        base = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                              capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:
        base = ""
url = (base or "https://pypi.org/simple").split()[0].rstrip("/") + "/tflite-runtime/"
try:
    urllib.request.urlopen(url, timeout=15)
except Exception as e:
    print(f"package index {url} unreachable: {e}", file=sys.stderr)
    sys.exit(1)
PY
}

want="${REQS[*]}"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
    command -v "$PYTHON" >/dev/null || { echo "error: $PYTHON not found (tflite-runtime 2.14.0 has wheels for Python 3.11); set PYTHON=..." >&2; exit 2; }
    echo "creating $DEVICE_VENV: $want"
    rm -rf "$DEVICE_VENV"
    "$PYTHON" -m venv "$DEVICE_VENV"
    if ! "$DEVICE_VENV/bin/python" -m pip install -q "${REQS[@]}"; then
        if ! index_reachable; then
            rm -rf "$DEVICE_VENV"
            echo "skip: cannot reach the package index to build the device venv" >&2
            exit 77
        fi
        echo "error: pip could not install ${REQS[*]} into $DEVICE_VENV" >&2
        exit 1
    fi
    echo "$want" > "$STAMP"
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
CHECK="$ROOT/tests/device/device_check.py"

echo "main venv: recording top-1 labels of $BUNDLE (litert)"
"$MAIN_PY" "$CHECK" record "$BUNDLE" "$WORK"
echo "device venv: $("$DEVICE_VENV/bin/python" -c 'import numpy, tflite_runtime; print("numpy", numpy.__version__, "tflite_runtime", tflite_runtime.__version__)')"
# pocketvit without its dependencies: the sdk folder on the path, nothing installed.
PYTHONPATH="$ROOT/sdk" "$DEVICE_VENV/bin/python" "$CHECK" check "$BUNDLE" "$WORK"
