#!/usr/bin/env bash
# Run the pocketvit camera demo on an NVIDIA Jetson (JetPack 6), ONNX target on TensorRT/CUDA.
#
#   apps/jetson/run.sh BUNDLE [csi|usb|VIDEO|URL|PIPELINE] [extra `pocketvit demo` options...]
#
#   csi (default)  the CSI camera through nvarguscamerasrc (GStreamer; needs JetPack's OpenCV)
#   usb            a USB camera (V4L2), /dev/video$USB_DEVICE
#   anything else  passed to --source as is (video file, image folder, rtsp:// URL, a pipeline with '!')
#
# With a display (DISPLAY set) it opens a window; without one it serves an MJPEG stream on
# 127.0.0.1:$PORT. Environment: SENSOR_ID (0), WIDTH x HEIGHT @ FPS (1280x720@30, the camera mode),
# OUT_W x OUT_H (640x360, what OpenCV receives), FLIP (0, nvvidconv flip-method), USB_DEVICE (0),
# PORT (8080), TARGET (onnx), POCKETVIT (pocketvit executable), DRY_RUN=1 prints the command only.
set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
BUNDLE=$1
SRC=${2:-csi}
shift $(( $# >= 2 ? 2 : 1 ))

SENSOR_ID=${SENSOR_ID:-0}
WIDTH=${WIDTH:-1280}
HEIGHT=${HEIGHT:-720}
FPS=${FPS:-30}
OUT_W=${OUT_W:-640}
OUT_H=${OUT_H:-360}
FLIP=${FLIP:-0}
USB_DEVICE=${USB_DEVICE:-0}
PORT=${PORT:-8080}
TARGET=${TARGET:-onnx}
POCKETVIT=${POCKETVIT:-pocketvit}

# The camera's NV12 frames stay in NVMM (GPU) memory until nvvidconv scales them; OpenCV gets BGR.
# appsink keeps only the newest buffer (drop=true max-buffers=1): the demo's own queue does the same.
csi_pipeline() {
    echo "nvarguscamerasrc sensor-id=$SENSOR_ID ! video/x-raw(memory:NVMM), width=$WIDTH, height=$HEIGHT, framerate=$FPS/1, format=NV12 ! nvvidconv flip-method=$FLIP ! video/x-raw, width=$OUT_W, height=$OUT_H, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! appsink drop=true max-buffers=1 sync=false"
}

case "$SRC" in
    csi) SOURCE=$(csi_pipeline) ;;
    usb) SOURCE=$USB_DEVICE ;;
    *) SOURCE=$SRC ;;
esac

if [ -n "${DISPLAY:-}" ]; then
    MODE=()
else
    MODE=(--headless --mjpeg "$PORT")
fi

# TensorRT builds an engine for the model when the session starts (slow the first time); keep it.
# These are ONNX Runtime's environment switches for its TensorRT provider.
export ORT_TENSORRT_ENGINE_CACHE_ENABLE=${ORT_TENSORRT_ENGINE_CACHE_ENABLE:-1}
export ORT_TENSORRT_CACHE_PATH=${ORT_TENSORRT_CACHE_PATH:-$HOME/.cache/pocketvit/tensorrt}

CMD=("$POCKETVIT" demo "$BUNDLE" --target "$TARGET" --source "$SOURCE" "${MODE[@]}" "$@")
if [ "${DRY_RUN:-0}" = 1 ]; then
    printf '%q ' "${CMD[@]}"
    echo
    exit 0
fi
mkdir -p "$ORT_TENSORRT_CACHE_PATH"
exec "${CMD[@]}"
