"""Where the demo's results go when it runs headless: frames.jsonl (one line per processed frame),
annotated JPEGs in frames/ or one demo.mp4, and snapshots."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._cv import get_cv2
from .errors import DemoError

SAVE_MODES = ("jpg", "mp4", "none")


def encode_jpeg(img: np.ndarray, quality: int = 85) -> bytes:
    cv2 = get_cv2()
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise DemoError("OpenCV could not encode a JPEG of the annotated frame")
    return buf.tobytes()


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as e:
        raise DemoError(f"{path}: cannot write ({e.strerror or e}); check --out and free disk space") from None


class DemoOutputs:
    """``out`` None: nothing is written (window or MJPEG only). ``save``: jpg | mp4 | none for the
    annotated frames; frames.jsonl is written whenever ``out`` is set."""

    def __init__(self, out: Path | None, save: str = "jpg", video_fps: float = 10.0, save_frames: bool = True):
        if save not in SAVE_MODES:
            raise DemoError(f"--save must be one of {', '.join(SAVE_MODES)}, got {save!r}")
        self.out = out
        self.save = save if (out is not None and save_frames) else "none"
        self.video_fps = video_fps
        self._jsonl: Any = None
        self._writer: Any = None
        self._size: tuple[int, int] | None = None
        self.frames_dir: Path | None = None
        self.video_path: Path | None = None
        if out is None:
            return
        try:
            out.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(out / "frames.jsonl", "w", encoding="utf-8", buffering=1)  # noqa: SIM115
        except OSError as e:
            raise DemoError(f"--out {out}: cannot write there ({e.strerror or e})") from None
        if self.save == "jpg":
            self.frames_dir = out / "frames"
            self.frames_dir.mkdir(exist_ok=True)
        elif self.save == "mp4":
            self.video_path = out / "demo.mp4"

    @property
    def wants_image(self) -> bool:
        return self.save != "none"

    def record(self, rec: dict) -> None:
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(rec, allow_nan=False) + "\n")

    def frame(self, n: int, img: np.ndarray, jpeg: bytes | None) -> None:
        if self.save == "jpg":
            _write(self.frames_dir / f"{n:06d}.jpg", jpeg if jpeg is not None else encode_jpeg(img))
        elif self.save == "mp4":
            self._video_frame(img)

    def _video_frame(self, img: np.ndarray) -> None:
        cv2 = get_cv2()
        if self._writer is None:
            h, w = img.shape[:2]
            self._size = (w - w % 2, h - h % 2)  # most encoders want even sizes
            self._writer = cv2.VideoWriter(
                str(self.video_path), cv2.VideoWriter_fourcc(*"mp4v"), float(self.video_fps), self._size
            )
            if not self._writer.isOpened():
                raise DemoError(f"{self.video_path}: OpenCV cannot write MP4 here; use --save jpg")
        if (img.shape[1], img.shape[0]) != self._size:
            img = cv2.resize(img, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(img))

    def snapshot(self, img: np.ndarray) -> Path:
        folder = self.out if self.out is not None else Path.cwd()
        folder.mkdir(parents=True, exist_ok=True)
        stem = time.strftime("snapshot-%Y%m%d-%H%M%S")
        path = folder / f"{stem}.jpg"
        i = 1
        while path.exists():
            path = folder / f"{stem}-{i}.jpg"
            i += 1
        _write(path, encode_jpeg(img, 95))
        return path

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._writer is not None:
            self._writer.release()
            self._writer = None
