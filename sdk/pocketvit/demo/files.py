"""File sources: a video, an image, or a folder of both. They never retry: an unreadable file in a
folder is skipped with a warning, an unreadable single file is a SourceError."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ._cv import get_cv2
from .errors import SourceError
from .frames import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Frame, Source, Warn, as_bgr, no_warn


def _read_image(path: Path) -> np.ndarray | None:
    cv2 = get_cv2()
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return None if img is None else as_bgr(img)


def _video_frames(path: Path, stop: threading.Event, name: str, warn: Warn = no_warn) -> Iterator[Frame]:
    """Every decodable frame; a video that stops decoding well before the frame count its container
    announces (truncated or damaged) ends with a warning, not an error."""
    cv2 = get_cv2()
    cap = cv2.VideoCapture(str(path))
    try:
        announced = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        index = 0
        while not stop.is_set():
            ok, img = cap.read()
            if not ok or img is None:
                # Container frame counts can be off by a frame or two; only a clear shortfall is news.
                if announced > 0 and index < announced - 2:
                    warn(f"{name}: decoding stopped after {index} of {announced} frames (truncated or damaged?)")
                return
            yield Frame(as_bgr(img), name, index, time.monotonic())
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
    def __init__(self, path: Path, loop: bool = False, warn: Warn = no_warn):
        self.path = path
        self.loop = loop
        self.warn = warn
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
        first = True
        while True:
            n = 0
            for f in _video_frames(self.path, stop, self.path.name, self.warn if first else no_warn):
                n += 1
                yield f
            if not self.loop or n == 0 or stop.is_set():
                return
            first = False


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

    def __init__(self, path: Path, loop: bool = False, warn: Warn = no_warn):
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
                    for f in _video_frames(p, stop, p.name, self.warn if first_pass else no_warn):
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
