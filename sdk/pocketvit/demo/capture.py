"""The capture thread and the small frame queue between it and the inference loop.

Live sources use the queue in *latest-frame* mode: one slot, a new frame replaces one the model has
not taken yet, so a slow model shows the newest frame instead of building a backlog (the count of
replaced frames is ``FrameSlot.dropped``). Files processed headless use *every-frame* mode: the
reader waits for the model when a few frames are queued, so every frame is processed exactly once;
decoding (and preprocessing) the next frames overlaps inference of the current one.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from pocketvit.errors import PocketVitError

from .errors import SourceError
from .sources import Frame, Source


@dataclass
class EndOfStream:
    pass


@dataclass
class SourceFailed:
    error: PocketVitError


class FrameSlot:
    """A small frame queue. ``drop=True``: one slot, and put() replaces an unread frame. ``drop=False``:
    up to ``depth`` frames, put() waits while it is full (a few frames of slack let the reader run ahead
    when it gets the CPU, so a moment of slow decoding does not stall the model). The end-of-stream /
    failure marker is kept apart so it is never dropped and comes after the last frame."""

    def __init__(self, drop: bool, depth: int = 1):
        self.drop = drop
        self.depth = 1 if drop else max(1, int(depth))
        self.dropped = 0
        self._cond = threading.Condition()
        self._frames: deque[Frame] = deque()
        self._final: EndOfStream | SourceFailed | None = None
        self._closed = False

    def put(self, frame: Frame) -> bool:
        """Offer a frame; False once the consumer has closed the slot."""
        with self._cond:
            if not self.drop:
                while len(self._frames) >= self.depth and not self._closed:
                    self._cond.wait(0.5)
            if self._closed:
                return False
            if self.drop and self._frames:
                self.dropped += len(self._frames)
                self._frames.clear()
            self._frames.append(frame)
            self._cond.notify_all()
            return True

    def finish(self, marker: EndOfStream | SourceFailed) -> None:
        with self._cond:
            self._final = marker
            self._cond.notify_all()

    def get(self, timeout: float) -> Frame | EndOfStream | SourceFailed:
        """The oldest pending frame, else the end marker; raises queue.Empty after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._frames and self._final is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise queue.Empty
                self._cond.wait(left)
            if self._frames:
                f = self._frames.popleft()
                self._cond.notify_all()
                return f
            return self._final

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._frames.clear()
            self._cond.notify_all()


class CaptureThread(threading.Thread):
    """Reads ``source`` into ``slot`` until the source ends, fails, or ``stop`` is set.

    ``pace_fps`` plays a file at that rate (window mode), as a camera would deliver it. ``prepare(frame)``
    runs on each frame before it is offered (only where no frame is dropped, so none is prepared in vain). A daemon
    thread: a driver stuck inside read() can never keep the process alive.
    """

    def __init__(self, source: Source, slot: FrameSlot, pace_fps: float | None = None,
                 prepare: Callable[[Frame], None] | None = None):
        super().__init__(name="pocketvit-capture", daemon=True)
        self.source = source
        self.slot = slot
        self.pace_fps = pace_fps
        self.prepare = prepare  # e.g. preprocessing, so it overlaps inference of the frame before
        self.stop_event = threading.Event()
        self.frames_read = 0

    def run(self) -> None:
        period = 1.0 / self.pace_fps if self.pace_fps else 0.0
        next_t = time.monotonic()
        try:
            for frame in self.source.frames(self.stop_event):
                if period:
                    delay = next_t - time.monotonic()
                    if delay > 0 and self.stop_event.wait(delay):
                        break
                    next_t = max(next_t + period, time.monotonic() - period)
                self.frames_read += 1
                if self.prepare is not None:
                    self.prepare(frame)
                if not self.slot.put(frame):
                    break
            self.slot.finish(EndOfStream())
        except PocketVitError as e:
            self.slot.finish(SourceFailed(e))
        except Exception as e:  # noqa: BLE001 - a decoder or driver error: report it, never die silently
            self.slot.finish(
                SourceFailed(SourceError(f"{self.source.description}: reading failed ({type(e).__name__}: {e})"))
            )
        finally:
            self.source.close()

    def stop(self, timeout: float = 2.0) -> None:
        self.stop_event.set()
        self.slot.close()
        self.join(timeout)
