"""Live sources: cameras (index or /dev/video*), stream URLs and GStreamer pipelines through
cv2.VideoCapture, and the Raspberry Pi camera through Picamera2.

Opening retries with bounded exponential backoff; a source that stops delivering frames mid-stream
(a camera unplugged and plugged back in) is reopened the same way; when the retries run out the
source raises CameraError.
"""

from __future__ import annotations

import glob
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._cv import get_cv2, has_gstreamer
from .errors import CameraError, SourceError
from .frames import STREAM_SCHEMES, Frame, Retry, Source, Warn, as_bgr, no_warn, sleep_for


class CaptureSource(Source):
    """A camera index, a /dev/video* path, a stream URL or a GStreamer pipeline, through cv2.VideoCapture."""

    live = True

    def __init__(
        self,
        spec: str | int,
        retry: Retry | None = None,
        size: tuple[int, int] | None = None,
        warn: Warn = no_warn,
        timeout_s: float = 5.0,
    ):
        self.spec = spec
        self.retry = retry or Retry()
        self.size = size
        self.warn = warn
        self.timeout_s = timeout_s
        self._cap: Any = None
        self._first: np.ndarray | None = None
        if isinstance(spec, int):
            self.kind, self.description = "camera", f"camera {spec}"
        elif "!" in spec:
            self.kind, self.description = "gstreamer", "GStreamer pipeline"
        elif spec.startswith(STREAM_SCHEMES):
            self.kind, self.description = "stream", _redact(spec)
        else:
            self.kind, self.description = "camera", f"camera {spec}"

    def _open_once(self) -> Any:
        cv2 = get_cv2()
        if self.kind == "gstreamer":
            if not has_gstreamer():
                raise SourceError(
                    "this OpenCV was built without GStreamer, so it cannot run the pipeline given to "
                    "--source (pip's opencv wheels never have it); use the distribution's OpenCV "
                    "(JetPack's on a Jetson: create the venv with --system-site-packages and do not "
                    "pip-install opencv), or pass a camera index such as --source 0"
                )
            cap = cv2.VideoCapture(self.spec, cv2.CAP_GSTREAMER)
        elif self.kind == "stream":
            ms = int(self.timeout_s * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            cap = cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG, params)
        else:
            cap = cv2.VideoCapture(self.spec)
            if self.size:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        if not cap.isOpened():
            cap.release()
            return None
        ok, img = cap.read()
        if not ok or img is None:
            cap.release()
            return None
        self._first = img
        return cap

    def _connect(self, stop: threading.Event | None, why: str) -> bool:
        """Try to (re)open with backoff. True on success, False when stopped; CameraError when out of tries."""
        waits = self.retry.waits()
        t0 = time.monotonic()
        for attempt in range(self.retry.attempts):
            try:
                self._cap = self._open_once()
            except SourceError:
                raise
            except Exception as e:  # noqa: BLE001 - a backend that throws instead of returning False
                self._cap = None
                last = str(e)
            else:
                last = ""
            if self._cap is not None:
                return True
            if attempt < len(waits):
                if attempt == 0 and why == "reconnect":
                    self.warn(f"{self.description} stopped delivering frames; reconnecting")
                if sleep_for(waits[attempt], stop):
                    return False
        raise CameraError(self._failure_message(why, time.monotonic() - t0, last))

    def _failure_message(self, why: str, seconds: float, detail: str) -> str:
        tries = f"{self.retry.attempts} attempts over {seconds:.1f} s"
        extra = f" ({detail})" if detail else ""
        if self.kind == "stream":
            return (
                f"{self.description}: cannot {'open' if why == 'open' else 'reconnect to'} the stream after "
                f"{tries}{extra}; check the URL, the network and the camera's credentials"
            )
        if self.kind == "gstreamer":
            return (
                f"the GStreamer pipeline did not deliver a frame after {tries}{extra}; test it with "
                "`gst-launch-1.0 <pipeline minus appsink> ! fakesink`, and check that nvargus-daemon runs "
                "(sudo systemctl restart nvargus-daemon) on a Jetson"
            )
        devices = sorted(glob.glob("/dev/video*"))
        have = f"video devices here: {', '.join(devices)}" if devices else "no /dev/video* device exists here"
        if why == "open":
            return (
                f"{self.description} cannot be opened after {tries}{extra}: it is missing, busy (another "
                f"program is using it) or not permitted ({have}). Close other camera apps, add yourself "
                "to the 'video' group, or pass another --source (an index, a video file or an image folder)"
            )
        return (
            f"{self.description} stopped delivering frames (unplugged?) and did not come back after "
            f"{tries} ({have})"
        )

    def open(self) -> None:
        self._connect(None, "open")

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        index = 0
        while not stop.is_set():
            if self._first is not None:  # the frame that proved the (re)opened device works
                ok, img, self._first = True, self._first, None
            else:
                ok, img = self._cap.read() if self._cap is not None else (False, None)
            if ok and img is not None:
                yield Frame(as_bgr(img), self.description, index, time.monotonic())
                index += 1
                continue
            if stop.is_set():
                return
            if self._cap is not None:
                self._cap.release()
                self._cap = None
            if not self._connect(stop, "reconnect"):
                return
            self.warn(f"{self.description} is back")

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _redact(url: str) -> str:
    """A URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


class PicameraSource(Source):
    """A Raspberry Pi camera through Picamera2 (apt package python3-picamera2)."""

    live = True
    description = "Pi camera (picamera2)"

    def __init__(self, retry: Retry | None = None, size: tuple[int, int] | None = None, warn: Warn = no_warn):
        self.retry = retry or Retry()
        self.size = size or (640, 480)
        self.warn = warn
        self._cam: Any = None

    def _open_once(self) -> Any:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError(
                "--source picam needs Picamera2, which comes from apt, not pip: `sudo apt install "
                "python3-picamera2`, and make the venv with --system-site-packages "
                "(apps/raspberry-pi/install.sh does both); or use --source 0 for a USB camera"
            ) from None
        cam = Picamera2()
        # "RGB888" is libcamera's name for 24-bit BGR in memory, which is OpenCV's order.
        cam.configure(cam.create_video_configuration(main={"size": tuple(self.size), "format": "RGB888"}))
        cam.start()
        return cam

    def _connect(self, stop: threading.Event | None, why: str) -> bool:
        waits = self.retry.waits()
        last = ""
        for attempt in range(self.retry.attempts):
            try:
                self._cam = self._open_once()
                return True
            except SourceError:
                raise
            except Exception as e:  # noqa: BLE001 - no camera: IndexError; busy: RuntimeError from libcamera
                last = f"{type(e).__name__}: {e}"
                self.close()
            if attempt < len(waits) and sleep_for(waits[attempt], stop):
                return False
        raise CameraError(
            f"the Pi camera cannot be {'opened' if why == 'open' else 'reopened'} after {self.retry.attempts} "
            f"attempts ({last}). Check the ribbon cable, `rpicam-hello --list-cameras`, and that no other "
            "program (another pocketvit-demo, rpicam-*) holds the camera"
        )

    def open(self) -> None:
        self._connect(None, "open")

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        index = 0
        while not stop.is_set():
            try:
                img = self._cam.capture_array()
            except Exception:  # noqa: BLE001 - libcamera errors have no common type; reconnect
                if stop.is_set():
                    return
                self.close()
                self.warn("the Pi camera stopped delivering frames; reconnecting")
                if not self._connect(stop, "reconnect"):
                    return
                continue
            yield Frame(as_bgr(np.asarray(img)), self.description, index, time.monotonic())
            index += 1

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
                self._cam.close()
            except Exception as e:  # noqa: BLE001 - libcamera errors share no type; closing a camera that already failed
                self.warn(f"closing the Pi camera failed ({type(e).__name__}: {e}); it is released anyway")
            self._cam = None
