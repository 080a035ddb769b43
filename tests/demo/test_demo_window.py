"""Window mode under Xvfb: the overlay is on screen, and the keys s (snapshot), p (pause), t (switch
target) and q (quit) work. Needs an OpenCV with a GUI: the venv's own when it has one, else
opencv-python installed once with `pip --target` into pytest's cache (the venv keeps the headless wheel)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2", reason="the demo needs OpenCV: pip install 'pocketvit[demo]'")
from pocketvit.runtime import Bundle

from tests.bench.testkit import all_targets_build
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

LABEL_BGR = np.array([80, 255, 80])  # pocketvit.demo.overlay.LABEL_COLOR


def _need_tool(tool: str, package: str) -> None:
    if shutil.which(tool):
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip(f"{tool} is missing and apt-get (as root) is not available to install {package}")
    r = subprocess.run(["apt-get", "install", "-y", "-qq", package], check=False, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True, timeout=600)
        r = subprocess.run(["apt-get", "install", "-y", "-qq", package], check=False, capture_output=True, text=True, timeout=600)
    if r.returncode != 0 or not shutil.which(tool):
        pytest.skip(f"could not install {package} with apt-get: {r.stderr.strip()[-300:]}")


def _gui_cv2_path(cache_dir: Path) -> str:
    """A PYTHONPATH entry giving a cv2 with window support ('' when the venv's cv2 has one)."""
    from pocketvit.demo._cv import has_gui

    if has_gui():
        return ""
    from importlib import metadata

    try:
        version = metadata.version("opencv-python-headless")
    except metadata.PackageNotFoundError:
        version = cv2.__version__
    target = cache_dir / f"opencv-python-{version}"
    if not (target / "cv2").is_dir():
        r = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
             f"opencv-python=={version}"],
            check=False, capture_output=True, text=True, timeout=900,
        )
        if r.returncode != 0:
            shutil.rmtree(target, ignore_errors=True)
            pytest.skip(f"cannot install opencv-python {version} (window support) from PyPI: {r.stderr.strip()[-300:]}")
    return str(target)


@pytest.fixture
def xvfb():
    _need_tool("Xvfb", "xvfb")
    _need_tool("xdotool", "xdotool")
    _need_tool("import", "imagemagick")
    proc = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "800x700x24", "-nolisten", "tcp"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        display = ":" + proc.stdout.readline().strip()
        yield display
    finally:
        proc.terminate()
        proc.wait(10)


def _x(display: str, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), env={**os.environ, "DISPLAY": display}, check=False, capture_output=True, text=True, timeout=30)


def _wait(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_window_mode_overlay_and_keys(tiny_build, tmp_path_factory, video, tmp_path, xvfb, request):
    bundle = all_targets_build(tiny_build, tmp_path_factory) / "bundle"  # several targets: key t switches
    target = "onnx"
    gui = _gui_cv2_path(Path(request.config.cache.mkdir("opencv-gui")))
    out = tmp_path / "out"
    env = {**os.environ, "DISPLAY": xvfb, "PYTHONPATH": os.pathsep.join(p for p in (gui, str(ROOT / "sdk")) if p)}
    if Path("/usr/share/fonts/truetype/dejavu").is_dir():  # pip's Qt ships no fonts; only its toolbar needs them
        env["QT_QPA_FONTDIR"] = "/usr/share/fonts/truetype/dejavu"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pocketvit.cli.main", "demo", str(bundle), "--source", str(video), "--loop",
         "--target", target, "--out", str(out)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait(lambda: proc.poll() is not None or _x(xvfb, "xdotool", "search", "--name", "pocketvit demo").stdout,
              120, "the demo window")
        assert proc.poll() is None, proc.communicate()[1]
        _wait(lambda: _lines(out / "frames.jsonl") >= 5, 60, "frames in the window")
        _x(xvfb, "xdotool", "mousemove", "60", "120")  # no window manager: focus follows the pointer

        _x(xvfb, "xdotool", "key", "s")
        snap = _wait(lambda: sorted(out.glob("snapshot-*.jpg")), 20, "the snapshot (key s)")[0]
        shot = tmp_path / "screen.png"
        assert _x(xvfb, "import", "-window", "root", str(shot)).returncode == 0
        screen = cv2.imread(str(shot))
        label_pixels = int((np.abs(screen.astype(int) - LABEL_BGR).max(axis=2) <= 10).sum())
        assert label_pixels > 50, "the label text of the overlay is not on screen"
        assert cv2.imread(str(snap)).shape[0] >= 480

        _x(xvfb, "xdotool", "key", "p")
        time.sleep(0.5)
        paused_at = _lines(out / "frames.jsonl")
        time.sleep(1.0)
        assert _lines(out / "frames.jsonl") == paused_at, "frames were processed while paused (key p)"
        _x(xvfb, "xdotool", "key", "p")
        _wait(lambda: _lines(out / "frames.jsonl") > paused_at, 20, "frames after resuming")

        targets = Bundle.open(bundle).targets
        if len(targets) > 1:
            _x(xvfb, "xdotool", "key", "t")
            _wait(lambda: json.loads((out / "frames.jsonl").read_text().splitlines()[-1])["target"] != target,
                  60, "the switch to another target (key t)")

        _x(xvfb, "xdotool", "key", "q")
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    assert "snapshot:" in stderr and "Traceback" not in stderr
