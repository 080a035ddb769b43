"""OpenCV, imported lazily and quietly (its own WARN lines and FFmpeg chatter are not messages
a user can act on; the demo says what went wrong itself)."""

from __future__ import annotations

import os
from typing import Any

from pocketvit.errors import MissingExtraError

_CV2: Any = None


def get_cv2() -> Any:
    """The cv2 module, or MissingExtraError naming the `demo` extra."""
    global _CV2
    if _CV2 is None:
        if os.environ.get("POCKETVIT_DEBUG") != "1":
            os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
            os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
            os.environ.setdefault("OPENCV_VIDEOIO_DEBUG", "0")
        try:
            import cv2
        except ImportError as e:
            raise MissingExtraError(
                "cv2", "demo", f"the camera demo needs OpenCV: {e}"
            ) from None
        _CV2 = cv2
    return _CV2


def build_info(key: str) -> str:
    """The value of one line of cv2.getBuildInformation() ('GUI', 'GStreamer', ...), '' if absent."""
    for line in get_cv2().getBuildInformation().splitlines():
        name, _, value = line.strip().partition(":")
        if name.strip() == key:
            return value.strip()
    return ""


def has_gui() -> bool:
    """True when this OpenCV can open windows (opencv-python, distro OpenCV), not the -headless wheel."""
    gui = build_info("GUI")
    return bool(gui) and gui.upper() != "NONE"


def has_gstreamer() -> bool:
    return build_info("GStreamer").upper().startswith("YES")
