#!/usr/bin/env bash
# Install the pocketvit camera demo on Raspberry Pi OS 64-bit (bookworm or later) and start it at boot.
#
#   sudo ./install.sh --bundle /path/to/bundle [--source picam|0|/dev/video0] [--port 8080]
#                     [--host 127.0.0.1] [--no-service] [--dry-run]
#
# What it does (idempotent; run it again to update the bundle or the settings):
#   1. apt: python3-venv, python3-picamera2 (the Pi camera; not on PyPI), python3-opencv (V4L2 +
#      GStreamer + GTK), python3-numpy (1.x, which tflite-runtime needs)
#   2. a venv in /opt/pocketvit/venv made with --system-site-packages, so it sees those apt packages;
#      `numpy<2` pinned; tflite-runtime from PyPI (ai-edge-litert where no tflite-runtime wheel exists)
#   3. pocketvit from this checkout with --no-deps (no torch: the demo only needs pocketvit.runtime)
#      plus its light CLI dependencies
#   4. the bundle copied to /var/lib/pocketvit/bundle and loaded once as a check
#   5. /etc/default/pocketvit-demo (settings) and pocketvit-demo.service (systemd), enabled and started
# Takes a few minutes on a Pi 5 (mostly apt). Nothing here needs a GPU.
set -euo pipefail

PREFIX=/opt/pocketvit
DATA=/var/lib/pocketvit
SERVICE_USER=pocketvit
BUNDLE=""
SOURCE=picam
PORT=8080
HOST=127.0.0.1
TARGET=litert
SERVICE=1
DRY_RUN=0
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: error: $*" >&2; exit 2; }
run() { if [ "$DRY_RUN" = 1 ]; then echo "+ $*"; else "$@"; fi; }

while [ $# -gt 0 ]; do
    case "$1" in
        --bundle) BUNDLE="${2:?--bundle needs a path}"; shift 2 ;;
        --source) SOURCE="${2:?--source needs a value}"; shift 2 ;;
        --port) PORT="${2:?--port needs a number}"; shift 2 ;;
        --host) HOST="${2:?--host needs an address}"; shift 2 ;;
        --target) TARGET="${2:?--target needs a name}"; shift 2 ;;
        --prefix) PREFIX="${2:?--prefix needs a path}"; shift 2 ;;
        --no-service) SERVICE=0; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
done

[ -n "$BUNDLE" ] || { usage >&2; die "--bundle is required (the folder \`pocketvit build\` wrote as <out>/bundle)"; }
[ -f "$BUNDLE/manifest.json" ] || die "$BUNDLE has no manifest.json: pass the bundle folder (unzip a .zip bundle first)"
grep -q "\"$TARGET\"" "$BUNDLE/manifest.json" || die "the bundle has no '$TARGET' target; rebuild it with export.targets including $TARGET, or pass --target"
case "$PORT" in ''|*[!0-9]*) die "--port must be a number, got '$PORT'" ;; esac
if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then die "run it with sudo (it installs apt packages and a systemd service)"; fi
ARCH="$(uname -m)"
[ "$ARCH" = aarch64 ] || echo "install.sh: warning: this is $ARCH, not aarch64 (Raspberry Pi OS 64-bit); continuing" >&2

echo "== 1/5 apt packages"
run apt-get update
APT_PACKAGES=(python3-venv python3-pip python3-numpy python3-opencv)
# python3-picamera2 comes from Raspberry Pi's own archive, which Raspberry Pi OS has and Debian or Ubuntu on a Pi
# do not: there the Pi camera cannot be used, USB cameras and video files can.
if [ "$DRY_RUN" = 1 ] || apt-cache show python3-picamera2 >/dev/null 2>&1; then
    APT_PACKAGES+=(python3-picamera2)
else
    echo "install.sh: warning: python3-picamera2 is not in this system's apt sources (Raspberry Pi OS has it):" \
        "--source picam will not work here; a USB camera (--source 0) or a video file will" >&2
fi
run apt-get install -y "${APT_PACKAGES[@]}"

echo "== 2/5 venv $PREFIX/venv (system site packages: picamera2, OpenCV, numpy 1.x from apt)"
run mkdir -p "$PREFIX"
[ -x "$PREFIX/venv/bin/python" ] || run python3 -m venv --system-site-packages "$PREFIX/venv"
PIP="$PREFIX/venv/bin/pip"
run "$PIP" install --upgrade pip
# tflite-runtime's wheels are built against NumPy 1.x: with NumPy 2 an Interpreter cannot be created.
run "$PIP" install "numpy<2"
if ! run "$PIP" install "tflite-runtime"; then
    echo "install.sh: no tflite-runtime wheel for this Python; using ai-edge-litert" >&2
    run "$PIP" install "ai-edge-litert"
fi

echo "== 3/5 pocketvit from $REPO (--no-deps: no torch)"
run "$PIP" install --no-deps "$REPO"
run "$PIP" install "typer>=0.12" "rich>=13" "pyyaml>=6" "pydantic>=2.5"

echo "== 4/5 bundle -> $DATA/bundle"
if ! id "$SERVICE_USER" >/dev/null 2>&1; then
    run useradd --system --home-dir "$DATA" --shell /usr/sbin/nologin --groups video "$SERVICE_USER"
fi
run mkdir -p "$DATA"
run rm -rf "$DATA/bundle.new"
run cp -r "$BUNDLE" "$DATA/bundle.new"
run rm -rf "$DATA/bundle"
run mv "$DATA/bundle.new" "$DATA/bundle"
run chown -R "$SERVICE_USER:$SERVICE_USER" "$DATA"
run "$PREFIX/venv/bin/python" -c "from pocketvit.runtime import load; p = load('$DATA/bundle', target='$TARGET'); print('bundle ok:', p, getattr(p.backend, 'interpreter_module', type(p.backend).__name__))"

echo "== 5/5 systemd service pocketvit-demo"
SETTINGS="POCKETVIT_BUNDLE=$DATA/bundle
POCKETVIT_TARGET=$TARGET
POCKETVIT_SOURCE=$SOURCE
POCKETVIT_PORT=$PORT
# 127.0.0.1: watch through an SSH tunnel. 0.0.0.0 shows the stream to the whole network, with no password.
POCKETVIT_HOST=$HOST"
if [ "$DRY_RUN" = 1 ]; then
    echo "+ write /etc/default/pocketvit-demo:"; echo "$SETTINGS" | sed 's/^/    /'
else
    echo "$SETTINGS" > /etc/default/pocketvit-demo
fi
UNIT="$(sed "s#/opt/pocketvit#$PREFIX#g" "$HERE/pocketvit-demo.service")"
if [ "$DRY_RUN" = 1 ]; then
    echo "+ write /etc/systemd/system/pocketvit-demo.service"
else
    echo "$UNIT" > /etc/systemd/system/pocketvit-demo.service
fi
if [ "$SERVICE" = 1 ]; then
    run systemctl daemon-reload
    run systemctl enable pocketvit-demo.service
    run systemctl restart pocketvit-demo.service
    echo "started. Logs: journalctl -u pocketvit-demo -f"
else
    echo "service installed but not enabled (--no-service); start it with: sudo systemctl enable --now pocketvit-demo"
fi
if [ "$HOST" = 127.0.0.1 ]; then
    echo "view it from your computer: ssh -L $PORT:127.0.0.1:$PORT <user>@<pi>  then open http://127.0.0.1:$PORT/"
else
    echo "view it at http://<pi address>:$PORT/ (no authentication: trusted networks only)"
fi
