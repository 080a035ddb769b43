"""Live-source behaviour without a camera: the latest-frame queue, reconnect with bounded backoff,
a source that hangs, and the MJPEG stream."""

from __future__ import annotations

import threading
import time
import urllib.request

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2", reason="the demo needs OpenCV: pip install 'pocketvit[demo]'")
from pocketvit.demo import (
    CameraError,
    DemoOptions,
    FrameSlot,
    Retry,
    SourceError,
    live,
    open_source,
    run_demo,
)
from pocketvit.demo import app as demo_app
from pocketvit.demo.capture import EndOfStream
from pocketvit.demo.sources import Frame, Source


def _frame(i: int) -> Frame:
    return Frame(np.full((8, 8, 3), i, np.uint8), "test", i, time.monotonic())


def test_latest_frame_slot_drops_old_frames():
    slot = FrameSlot(drop=True)
    for i in range(5):
        assert slot.put(_frame(i))
    slot.finish(EndOfStream())
    assert slot.get(0.1).index == 4 and slot.dropped == 4
    assert isinstance(slot.get(0.1), EndOfStream)


def test_every_frame_slot_waits_for_the_consumer():
    slot = FrameSlot(drop=False)
    got = []

    def producer():
        for i in range(5):
            slot.put(_frame(i))
        slot.finish(EndOfStream())

    t = threading.Thread(target=producer)
    t.start()
    while True:
        item = slot.get(2.0)
        if isinstance(item, EndOfStream):
            break
        time.sleep(0.01)  # a slow model
        got.append(item.index)
    t.join(2)
    assert got == [0, 1, 2, 3, 4] and slot.dropped == 0


class FakeCapture:
    """cv2.VideoCapture stand-in: `plan` is a shared list of what successive opens deliver
    (an int: that many frames then a failed read; None: the open fails)."""

    plan: list = []  # noqa: RUF012 - shared on purpose: successive opens consume it

    def __init__(self, *args, **kwargs):
        self.left = FakeCapture.plan.pop(0) if FakeCapture.plan else None

    def isOpened(self):
        return self.left is not None

    def read(self):
        if self.left:
            self.left -= 1
            return True, np.zeros((4, 4, 3), np.uint8)
        return False, None

    def set(self, *a):
        return True

    def release(self):
        pass


@pytest.fixture
def fake_cv2(monkeypatch):
    class FakeCv2:
        VideoCapture = FakeCapture
        CAP_PROP_FRAME_WIDTH = 3
        CAP_PROP_FRAME_HEIGHT = 4

    monkeypatch.setattr(live, "get_cv2", lambda: FakeCv2)
    return FakeCapture


def test_camera_reconnects_after_unplug(fake_cv2):
    fake_cv2.plan = [3, None, 2]  # 3 frames, unplugged, one failed reopen, back with 2 frames, gone
    warnings = []
    src = open_source("0", retry=Retry(attempts=3, first_s=0.01), warn=warnings.append)
    got = []
    with pytest.raises(CameraError, match="stopped delivering frames"):
        for f in src.frames(threading.Event()):
            got.append(f.index)
    assert got == [0, 1, 2, 3, 4]
    assert any("reconnecting" in w for w in warnings) and any("is back" in w for w in warnings)


def test_camera_open_retries_are_bounded(fake_cv2):
    fake_cv2.plan = []
    t = time.monotonic()
    with pytest.raises(CameraError, match="cannot be opened after 3 attempts"):
        open_source("2", retry=Retry(attempts=3, first_s=0.05))
    assert time.monotonic() - t < 2


def test_gstreamer_pipeline_needs_gstreamer_opencv():
    if live.has_gstreamer():
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(SourceError, match="without GStreamer"):
        open_source("videotestsrc num-buffers=1 ! videoconvert ! appsink")


def test_stream_password_is_not_printed():
    assert live._redact("rtsp://admin:secret@10.0.0.2:554/s1") == "rtsp://admin:***@10.0.0.2:554/s1"


class ScriptedSource(Source):
    """A live source that yields `n` frames, then fails (`then='fail'`) or hangs (`then='hang'`)."""

    live = True
    description = "scripted camera"

    def __init__(self, n: int, then: str):
        self.n, self.then = n, then

    def frames(self, stop):
        for i in range(self.n):
            yield Frame(np.full((28, 28, 3), 30 * i, np.uint8), self.description, i, time.monotonic())
        if self.then == "fail":
            raise CameraError("scripted camera stopped delivering frames (unplugged?)")
        stop.wait(60)


@pytest.mark.parametrize("then, timeout", [("fail", 10.0), ("hang", 1.0)])
def test_live_source_failing_mid_stream_ends_cleanly(bundle, target, tmp_path, monkeypatch, then, timeout):
    monkeypatch.setattr(demo_app, "open_source", lambda *a, **k: ScriptedSource(3, then))
    t = time.monotonic()
    with pytest.raises(CameraError, match="unplugged" if then == "fail" else "no frame for"):
        run_demo(DemoOptions(bundle=bundle, source="0", target=target, headless=True, out=tmp_path,
                             stall_timeout_s=timeout), log=lambda m: None)
    assert time.monotonic() - t < 15
    lines = (tmp_path / "frames.jsonl").read_text().splitlines()
    assert 1 <= len(lines) <= 3  # latest-frame queue: a frame may be replaced before it is taken


def test_mjpeg_stream_serves_annotated_frames(bundle, target, video, tmp_path):
    urls: list[str] = []
    result = {}

    def run():
        result["r"] = run_demo(
            DemoOptions(bundle=bundle, source=str(video), target=target, headless=True, mjpeg_port=0,
                        loop=True, fps=20.0, max_frames=80),
            log=lambda m: urls.append(m.split()[-1]) if m.startswith("MJPEG") else None,
        )

    t = threading.Thread(target=run)
    t.start()
    try:
        deadline = time.monotonic() + 30
        while not urls and time.monotonic() < deadline:
            time.sleep(0.05)
        url = urls[0]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "stream.mjpg", timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            data = b""
            while data.count(b"--frame") < 3:
                data += resp.read1(65536)
        part = data.split(b"--frame")[1]
        jpeg = part[part.index(b"\r\n\r\n") + 4:]
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[0] >= 480
        with urllib.request.urlopen(url + "stats.json", timeout=10) as resp:
            assert b'"label"' in resp.read()
    finally:
        t.join(60)
    assert result["r"].frames == 80
