"""What every frame source shares: the Frame record, bounded retry, the Source interface."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")

Warn = Callable[[str], None]


def no_warn(msg: str) -> None:
    pass


@dataclass
class Frame:
    image: np.ndarray  # HxWx3 uint8, BGR
    source: str  # what it came from: "camera 0", "clip.mp4", "img_003.png"
    index: int  # frame number within that source
    t_capture: float  # time.monotonic() when it was read
    # set by the capture thread when it preprocesses too (every-frame mode): the model input, which
    # Predictor made it (a switched target preprocesses again), and how long it took
    tensor: np.ndarray | None = None
    prepared_by: Any = None
    preprocess_ms: float = 0.0


@dataclass
class Retry:
    """Bounded exponential backoff for live sources: ``attempts`` tries, waits first, first*2, ... <= cap."""

    attempts: int = 5
    first_s: float = 0.5
    cap_s: float = 4.0

    def waits(self) -> list[float]:
        return [min(self.first_s * 2**i, self.cap_s) for i in range(max(0, self.attempts - 1))]


def sleep_for(seconds: float, stop: threading.Event | None) -> bool:
    """Sleep unless stopped; True when stop was set."""
    if stop is None:
        time.sleep(seconds)
        return False
    return stop.wait(seconds)


def as_bgr(img: np.ndarray) -> np.ndarray:
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
