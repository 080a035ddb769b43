"""Choosing the frame source that ``--source`` names. Every source yields BGR uint8 frames.

Live sources (live.py) retry and reconnect with bounded backoff; file sources (files.py) never retry.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import SourceError
from .files import FolderSource, ImageFileSource, VideoFileSource
from .frames import IMAGE_SUFFIXES, STREAM_SCHEMES, VIDEO_SUFFIXES, Frame, Retry, Source, Warn, no_warn
from .live import CaptureSource, PicameraSource

__all__ = [
    "IMAGE_SUFFIXES",
    "STREAM_SCHEMES",
    "VIDEO_SUFFIXES",
    "CaptureSource",
    "FolderSource",
    "Frame",
    "ImageFileSource",
    "PicameraSource",
    "Retry",
    "Source",
    "VideoFileSource",
    "open_source",
]

def open_source(
    spec: str,
    *,
    loop: bool = False,
    retry: Retry | None = None,
    size: tuple[int, int] | None = None,
    warn: Warn = no_warn,
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
            if p.suffix.lower() in IMAGE_SUFFIXES:
                src = ImageFileSource(p, loop=loop)
            else:
                src = VideoFileSource(p, loop=loop, warn=warn)
        else:
            raise SourceError(
                f"--source {spec!r}: no such file or folder, and not a camera index (0, 1, ...), "
                "/dev/videoN, stream URL (rtsp://...), GStreamer pipeline (with '!') or 'picam'"
            )
    src.open()
    return src
