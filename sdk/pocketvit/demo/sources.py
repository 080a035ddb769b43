"""Frame sources for the demo: cameras, streams, GStreamer pipelines, Picamera2, video files,
single images and folders of them. Each yields BGR uint8 frames.

Live sources (camera index or /dev/video*, rtsp:// / http:// URLs, GStreamer pipelines, ``picam``)
retry opening with bounded exponential backoff, and reconnect the same way when they stop
delivering frames mid-stream (a camera unplugged and plugged back in); when the retries run out
they raise CameraError. File sources never retry: an unreadable image or video inside a folder is
skipped with a warning, an unreadable single file is a SourceError.
"""

from __future__ import annotations

import glob
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._cv import get_cv2, has_gstreamer
from .errors import CameraError, SourceError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")

Warn = Callable[[str], None]


def _no_warn(msg: str) -> None:
    pass


@dataclass
class Frame:
    image: np.ndarray  # HxWx3 uint8, BGR
    source: str  # what it came from: "camera 0", "clip.mp4", "img_003.png"
    index: int  # frame number within that source
    t_capture: float  # time.monotonic() when it was read


@dataclass
class Retry:
    """Bounded exponential backoff for live sources: ``attempts`` tries, waits first, first*2, ... <= cap."""

    attempts: int = 5
    first_s: float = 0.5
    cap_s: float = 4.0

    def waits(self) -> list[float]:
        return [min(self.first_s * 2**i, self.cap_s) for i in range(max(0, self.attempts - 1))]


def _sleep(seconds: float, stop: threading.Event | None) -> bool:
    """Sleep unless stopped; True when stop was set."""
    if stop is None:
        time.sleep(seconds)
        return False
    return stop.wait(seconds)


def _as_bgr(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if img.shape[2] == 4:
        return np.ascontiguousarray(img[:, :, :3])
    return img


class Source:
    """Base class. ``open()`` raises SourceError/CameraError; ``frames(stop)`` yields Frames."""

    live = False
    fps: float | None = None  # the source's own rate, when it has one (video files)
    description = "source"

    def open(self) -> None:
        pass

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- live (OpenCV)


class CaptureSource(Source):
    """A camera index, a /dev/video* path, a stream URL or a GStreamer pipeline, through cv2.VideoCapture."""

    live = True

    def __init__(
        self,
        spec: str | int,
        retry: Retry | None = None,
        size: tuple[int, int] | None = None,
        warn: Warn = _no_warn,
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
                if _sleep(waits[attempt], stop):
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
                yield Frame(_as_bgr(img), self.description, index, time.monotonic())
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

    def __init__(self, retry: Retry | None = None, size: tuple[int, int] | None = None, warn: Warn = _no_warn):
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
            if attempt < len(waits) and _sleep(waits[attempt], stop):
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
            yield Frame(_as_bgr(np.asarray(img)), self.description, index, time.monotonic())
            index += 1

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
                self._cam.close()
            except Exception:  # noqa: BLE001, S110 - closing a camera that already failed
                pass
            self._cam = None


# --------------------------------------------------------------------------- files


def _read_image(path: Path) -> np.ndarray | None:
    cv2 = get_cv2()
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return None if img is None else _as_bgr(img)


def _video_frames(path: Path, stop: threading.Event, name: str) -> Iterator[Frame]:
    cv2 = get_cv2()
    cap = cv2.VideoCapture(str(path))
    try:
        index = 0
        while not stop.is_set():
            ok, img = cap.read()
            if not ok or img is None:
                return
            yield Frame(_as_bgr(img), name, index, time.monotonic())
            index += 1
    finally:
        cap.release()


def _probe_video(path: Path) -> tuple[bool, float | None]:
    """(readable: opens and decodes a first frame, fps or None)."""
    cv2 = get_cv2()
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return False, None
        ok, img = cap.read()
        fps = cap.get(cv2.CAP_PROP_FPS)
        return bool(ok and img is not None), (float(fps) if fps and 0 < fps < 1000 else None)
    finally:
        cap.release()


class VideoFileSource(Source):
    def __init__(self, path: Path, loop: bool = False):
        self.path = path
        self.loop = loop
        self.description = path.name

    def open(self) -> None:
        ok, self.fps = _probe_video(self.path)
        if not ok:
            raise SourceError(
                f"{self.path}: cannot read this video (corrupt, truncated, or encoded with a codec this "
                "OpenCV lacks); check it plays in another player, or re-encode it with "
                "`ffmpeg -i IN -c:v libx264 OUT.mp4`"
            )

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        while True:
            n = 0
            for f in _video_frames(self.path, stop, self.path.name):
                n += 1
                yield f
            if not self.loop or n == 0 or stop.is_set():
                return


class ImageFileSource(Source):
    def __init__(self, path: Path, loop: bool = False):
        self.path = path
        self.loop = loop
        self.description = path.name
        self._img: np.ndarray | None = None

    def open(self) -> None:
        self._img = _read_image(self.path)
        if self._img is None:
            raise SourceError(f"{self.path}: cannot decode this image (corrupt, empty or not an image)")

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        while not stop.is_set():
            yield Frame(self._img, self.path.name, 0, time.monotonic())
            if not self.loop:
                return


def _natural_key(p: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


class FolderSource(Source):
    """Every image and video in a folder (not recursive), in natural name order. Unreadable files
    are skipped with a warning; a folder with no readable file at all is a SourceError."""

    def __init__(self, path: Path, loop: bool = False, warn: Warn = _no_warn):
        self.path = path
        self.loop = loop
        self.warn = warn
        self.description = f"{path.name}/"
        self.files: list[Path] = []
        self.skipped: list[Path] = []

    def open(self) -> None:
        media = IMAGE_SUFFIXES | VIDEO_SUFFIXES
        self.files = sorted(
            (p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in media), key=_natural_key
        )
        if not self.files:
            raise SourceError(
                f"{self.path}: no images or videos in this folder (looked for "
                f"{', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))})"
            )

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        first_pass = True
        while not stop.is_set():
            produced = 0
            for p in self.files:
                if stop.is_set():
                    return
                if p.suffix.lower() in IMAGE_SUFFIXES:
                    img = _read_image(p)
                    if img is None:
                        if first_pass:
                            self.skipped.append(p)
                            self.warn(f"skipped {p.name}: cannot decode this image (corrupt or not an image)")
                        continue
                    produced += 1
                    yield Frame(img, p.name, 0, time.monotonic())
                else:
                    n = 0
                    for f in _video_frames(p, stop, p.name):
                        n += 1
                        yield f
                    produced += n
                    if n == 0 and first_pass:
                        self.skipped.append(p)
                        self.warn(f"skipped {p.name}: cannot read this video (corrupt, truncated or unknown codec)")
            if produced == 0:
                raise SourceError(
                    f"{self.path}: none of its {len(self.files)} image/video files could be read "
                    f"(all skipped: {', '.join(p.name for p in self.skipped[:5])}"
                    f"{', ...' if len(self.skipped) > 5 else ''})"
                )
            first_pass = False
            if not self.loop:
                return


# --------------------------------------------------------------------------- choosing


def open_source(
    spec: str,
    *,
    loop: bool = False,
    retry: Retry | None = None,
    size: tuple[int, int] | None = None,
    warn: Warn = _no_warn,
) -> Source:
    """Build and open the source named by ``--source``:

    - ``0``, ``1``, ... or ``/dev/videoN``: a camera (V4L2 on Linux)
    - ``rtsp://...``, ``http(s)://...`` (not ending in an image suffix): a network stream
    - anything containing ``!``: a GStreamer pipeline ending in ``appsink`` (cv2.CAP_GSTREAMER)
    - ``picam``: the Raspberry Pi camera through Picamera2
    - a folder: its images and videos; an image file; a video file
    """
    s = spec.strip()
    if s.isdigit():
        src: Source = CaptureSource(int(s), retry=retry, size=size, warn=warn)
    elif "!" in s:
        src = CaptureSource(s, retry=retry, warn=warn)
    elif s.lower() in ("picam", "picamera", "picamera2"):
        src = PicameraSource(retry=retry, size=size, warn=warn)
    elif s.startswith(STREAM_SCHEMES):
        src = CaptureSource(s, retry=retry, warn=warn)
    elif s.startswith("/dev/video"):
        src = CaptureSource(s, retry=retry, size=size, warn=warn)
    else:
        p = Path(os.path.expanduser(s))
        if p.is_dir():
            src = FolderSource(p, loop=loop, warn=warn)
        elif p.is_file():
            src = ImageFileSource(p, loop=loop) if p.suffix.lower() in IMAGE_SUFFIXES else VideoFileSource(p, loop=loop)
        else:
            raise SourceError(
                f"--source {spec!r}: no such file or folder, and not a camera index (0, 1, ...), "
                "/dev/videoN, stream URL (rtsp://...), GStreamer pipeline (with '!') or 'picam'"
            )
    src.open()
    return src
