"""The demo's pipeline: the capture thread preprocesses the next frame (Predictor.predict_tensor gives what
predict gives), and headless output runs on an OutputWorker thread (in order, errors surface, no hang)."""

from __future__ import annotations

import threading
import time

import pytest
from pocketvit.demo.errors import DemoError
from pocketvit.demo.writer import OutputWorker


def test_predict_tensor_is_predict_on_a_preprocessed_frame(bundle, target, video_frames):
    from pocketvit.runtime import load

    with load(bundle, target=target) as p:
        for f in video_frames[:5]:
            a = p.predict(f, topk=3)
            b = p.predict_tensor(p.preprocess(f), topk=3)
            assert (a.label, a.score, a.topk, a.index, a.exit) == (b.label, b.score, b.topk, b.index, b.exit)
            assert a.scores.tobytes() == b.scores.tobytes()


def test_output_worker_keeps_order_and_reports_errors():
    seen = []
    w = OutputWorker(seen.append, depth=2)
    w.start()
    for i in range(50):
        w.submit(i)
    w.close()
    assert seen == list(range(50)) and not w.is_alive()

    def fail(item):
        if item == 3:
            raise OSError("disk full")

    w = OutputWorker(fail, depth=1)
    w.start()
    t = time.monotonic()
    with pytest.raises(DemoError, match="disk full"):
        for i in range(100):  # the failure surfaces at a later submit, never a hang on the full queue
            w.submit(i)
        w.close()
    assert time.monotonic() - t < 10
    w.close(raise_error=False)
    assert not w.is_alive()


def test_headless_write_error_is_one_clean_error(bundle, target, video, tmp_path, monkeypatch):
    from pocketvit.demo import DemoOptions, run_demo
    from pocketvit.demo import outputs as outputs_mod

    calls = []

    def broken(path, data):
        calls.append(path)
        if len(calls) == 4:
            raise DemoError(f"{path}: cannot write (No space left on device); check --out and free disk space")
        path.write_bytes(data)

    monkeypatch.setattr(outputs_mod, "_write", broken)
    with pytest.raises(DemoError, match="No space left"):
        run_demo(DemoOptions(bundle=bundle, source=str(video), target=target, headless=True, out=tmp_path / "out"),
                 log=lambda m: None)
    assert len(calls) >= 4
    assert not [t for t in threading.enumerate() if t.name == "pocketvit-output"]  # the worker was joined


def test_every_frame_queue_holds_depth_frames_then_waits():
    import numpy as np
    from pocketvit.demo.capture import EndOfStream, FrameSlot
    from pocketvit.demo.sources import Frame

    slot = FrameSlot(drop=False, depth=3)
    put = []

    def producer():
        for i in range(6):
            slot.put(Frame(np.zeros((2, 2, 3), np.uint8), "test", i, 0.0))
            put.append(i)
        slot.finish(EndOfStream())

    t = threading.Thread(target=producer, daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while len(put) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert put == [0, 1, 2]  # three queued, the fourth waits for the consumer
    got = []
    while not isinstance(item := slot.get(2.0), EndOfStream):
        got.append(item.index)
    t.join(2)
    assert got == list(range(6)) and slot.dropped == 0
    assert FrameSlot(drop=True, depth=3).depth == 1  # latest-frame mode keeps one slot
