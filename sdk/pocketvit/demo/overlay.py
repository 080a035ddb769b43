"""The annotated view: the frame (enlarged when tiny) with a banner of label, score, FPS, latency,
exit taken and target."""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass

import numpy as np

from ._cv import get_cv2

LABEL_COLOR = (80, 255, 80)  # BGR; tests look for this colour in screenshots
TEXT_COLOR = (255, 255, 255)
PAUSE_COLOR = (0, 200, 255)
MIN_SIDE = 480  # a 28x28 Fashion-MNIST frame is shown at 504x504


@dataclass
class ViewInfo:
    label: str | None
    score: float | None
    fps: float
    latency_ms: float
    preprocess_ms: float
    exit: str | None
    target: str
    paused: bool = False
    note: str = ""


class FpsMeter:
    """Frames per second over the last ``window`` frames."""

    def __init__(self, window: int = 30):
        self._t: collections.deque[float] = collections.deque(maxlen=window)

    def tick(self, t: float | None = None) -> float:
        self._t.append(time.monotonic() if t is None else t)
        return self.fps

    @property
    def fps(self) -> float:
        if len(self._t) < 2:
            return 0.0
        span = self._t[-1] - self._t[0]
        return (len(self._t) - 1) / span if span > 0 else 0.0


def display_image(frame: np.ndarray, min_side: int = MIN_SIDE) -> np.ndarray:
    """The frame enlarged by a whole factor (nearest neighbour, so pixels stay visible) when its
    shorter side is below ``min_side``."""
    h, w = frame.shape[:2]
    k = math.ceil(min_side / min(h, w)) if min(h, w) < min_side else 1
    if k == 1:
        return frame.copy()
    cv2 = get_cv2()
    return cv2.resize(frame, (w * k, h * k), interpolation=cv2.INTER_NEAREST)


def annotate(frame: np.ndarray, info: ViewInfo, min_side: int = MIN_SIDE) -> np.ndarray:
    """A copy of ``frame`` (HxWx3 BGR) with the banner drawn on top."""
    cv2 = get_cv2()
    img = display_image(frame, min_side)
    h, w = img.shape[:2]
    s = max(0.45, min(w, 1280) / 640.0)  # text scale follows the view width
    line = int(26 * s)
    banner_h = 2 * line + int(12 * s)
    roi = img[:banner_h]
    roi[:] = (roi.astype(np.uint16) * 2 // 7).astype(np.uint8)  # darken: text stays readable on any frame
    font = cv2.FONT_HERSHEY_SIMPLEX
    head = f"{info.label}  {info.score:.2f}" if info.label is not None else "(no label)"
    cv2.putText(img, head, (int(8 * s), line), font, 0.8 * s, LABEL_COLOR, max(1, int(2 * s)), cv2.LINE_AA)
    exit_name = info.exit or "final"
    stats = (
        f"{info.fps:5.1f} FPS  {info.latency_ms:.2f} ms (+{info.preprocess_ms:.2f} pre)  "
        f"exit {exit_name}  [{info.target}]"
    )
    cv2.putText(img, stats, (int(8 * s), 2 * line), font, 0.5 * s, TEXT_COLOR, 1, cv2.LINE_AA)
    if info.paused or info.note:
        msg = "PAUSED" if info.paused else info.note
        cv2.putText(img, msg, (int(8 * s), h - int(12 * s)), font, 0.7 * s, PAUSE_COLOR, max(1, int(2 * s)),
                    cv2.LINE_AA)
    return img
