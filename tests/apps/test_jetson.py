"""apps/jetson/run.sh: the command it runs, and that its CSI pipeline is taken as a GStreamer source."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from tests.conftest import ROOT

RUN = ROOT / "apps" / "jetson" / "run.sh"


def _dry(*args: str, display: str = "") -> list[str]:
    env = {**os.environ, "DRY_RUN": "1", "DISPLAY": display}
    r = subprocess.run(["bash", str(RUN), *args], check=False, capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return shlex.split(r.stdout)


def test_csi_headless_command():
    cmd = _dry("/b", "csi", "--max-frames", "5")
    assert cmd[:5] == ["pocketvit", "demo", "/b", "--target", "onnx"]
    source = cmd[cmd.index("--source") + 1]
    assert source.startswith("nvarguscamerasrc sensor-id=0 ! ") and source.endswith("! appsink drop=true max-buffers=1 sync=false")
    assert "format=BGR !" in source
    assert cmd[-5:] == ["--headless", "--mjpeg", "8080", "--max-frames", "5"]


def test_usb_with_display_opens_a_window():
    cmd = _dry("/b", "usb", display=":0")
    assert cmd == ["pocketvit", "demo", "/b", "--target", "onnx", "--source", "0"]


def test_pipeline_string_is_a_gstreamer_source():
    pytest.importorskip("cv2", reason="the demo needs OpenCV: pip install 'pocketvit[demo]'")
    from pocketvit.demo.live import CaptureSource

    source = _dry("/b")[6]
    assert CaptureSource(source).kind == "gstreamer"
    assert CaptureSource(0).kind == "camera"
    assert CaptureSource("rtsp://cam/stream").kind == "stream"
