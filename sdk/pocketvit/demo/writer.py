"""Headless output off the inference thread: each processed frame is annotated, JPEG-encoded, written
(frames/, demo.mp4, frames.jsonl) and streamed (MJPEG) by one worker thread, in frame order, while the
inference loop runs the next frame. The queue between them is bounded: when writing is slower than the
model, the loop waits (``handoff`` time) rather than holding an unbounded backlog of frames."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from pocketvit.errors import PocketVitError

from .errors import DemoError

_DONE = object()


class OutputWorker(threading.Thread):
    """``submit(item)`` hands one frame's results to ``handle(item)`` on this thread; ``close()`` drains the
    queue, joins, and raises the first error ``handle`` raised (also raised by the next ``submit``)."""

    def __init__(self, handle: Callable[[Any], None], depth: int = 4):
        super().__init__(name="pocketvit-output", daemon=True)
        self.handle = handle
        self._q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.error: BaseException | None = None
        self.busy_s = 0.0  # time spent in handle()
        self.handoff_s = 0.0  # time submit() waited for room in the queue

    def run(self) -> None:
        while True:
            item = self._q.get()
            if item is _DONE:
                return
            if self.error is not None:
                continue  # failed: drain what is queued so submit() never blocks forever
            t = time.monotonic()
            try:
                self.handle(item)
            except PocketVitError as e:
                self.error = e
            except Exception as e:  # noqa: BLE001 - a writer or encoder error: report it in the demo's words
                self.error = DemoError(f"writing the demo's output failed ({type(e).__name__}: {e})")
            self.busy_s += time.monotonic() - t

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def submit(self, item: Any) -> None:
        self._raise()
        t = time.monotonic()
        self._q.put(item)
        self.handoff_s += time.monotonic() - t

    def close(self, raise_error: bool = True) -> None:
        """Write what is queued, stop the thread, raise its error if any (and ``raise_error``)."""
        if self.is_alive():
            self._q.put(_DONE)
            self.join()
        if raise_error:
            self._raise()
