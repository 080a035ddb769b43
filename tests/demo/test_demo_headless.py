"""`pocketvit demo` headless: every frame of a video or folder processed, frames.jsonl agreeing with
Predictor.predict, and clean errors (no traceback, bounded time) for missing cameras and bad files."""

from __future__ import annotations

import json
import time

import pytest

cv2 = pytest.importorskip("cv2", reason="the demo needs OpenCV: pip install 'pocketvit[demo]'")
from pocketvit.demo import DemoError, DemoOptions, SourceError, run_demo

from tests.conftest import run_cli
from tests.demo.conftest import N_FRAMES, decode_all

KEYS = {"frame", "time", "label", "score", "latency_ms", "exit", "target"}


def _lines(out):
    return [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]


def test_headless_video_every_frame_matches_predictor(bundle, target, video, video_frames, tmp_path):
    from pocketvit.runtime import load

    out = tmp_path / "out"
    r = run_demo(DemoOptions(bundle=bundle, source=str(video), target=target, headless=True, out=out),
                 log=lambda m: None)
    assert (r.frames, r.dropped, r.target) == (N_FRAMES, 0, target)
    lines = _lines(out)
    assert [rec["frame"] for rec in lines] == list(range(N_FRAMES))
    assert all(KEYS <= rec.keys() for rec in lines)
    assert {rec["target"] for rec in lines} == {target} and all(rec["exit"] is None for rec in lines)
    assert [rec["source_frame"] for rec in lines] == list(range(N_FRAMES))
    jpgs = sorted((out / "frames").glob("*.jpg"))
    assert len(jpgs) == N_FRAMES
    view = cv2.imread(str(jpgs[0]))
    assert view.shape[0] >= 480 and view.shape[1] >= 480  # 112x112 frames shown enlarged with the banner
    with load(bundle, target=target) as p:
        expected = [p.predict(f, topk=3) for f in video_frames]
    assert [rec["label"] for rec in lines] == [e.label for e in expected]
    assert [rec["score"] for rec in lines] == pytest.approx([e.score for e in expected], abs=1e-5)


def test_cli_headless_mp4_and_max_frames(bundle, target, video, tmp_path):
    out = tmp_path / "out"
    r = run_cli("demo", str(bundle), "--source", str(video), "--target", target, "--headless", "--out", str(out),
                "--save", "mp4", "--max-frames", "7")
    assert r.returncode == 0, r.stderr
    assert "7 frames in" in r.stderr
    assert len(_lines(out)) == 7
    assert len(decode_all(out / "demo.mp4")) == 7


def test_folder_with_corrupt_image_is_skipped_with_warning(bundle, target, image_folder, tmp_path):
    out = tmp_path / "out"
    warnings = []
    r = run_demo(DemoOptions(bundle=bundle, source=str(image_folder), target=target, headless=True, out=out),
                 log=lambda m: None, warn=warnings.append)
    assert r.frames == 4
    assert [rec["source"] for rec in _lines(out)] == ["item0.png", "item1.png", "item2.png", "item3.png"]
    assert len(warnings) == 1 and "item2b.png" in warnings[0] and "skipped" in warnings[0]


def _assert_clean_failure(r, *fragments):
    assert r.returncode == 7, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    for f in fragments:
        assert f in r.stderr, r.stderr


def test_missing_camera_is_a_clean_bounded_error(bundle, tmp_path):
    t = time.monotonic()
    r = run_cli("demo", str(bundle), "--source", "9", "--headless", "--out", str(tmp_path / "out"))
    elapsed = time.monotonic() - t
    _assert_clean_failure(r, "camera 9 cannot be opened", "4 attempts")
    assert elapsed < 60  # 3 retries: 0.5 + 1 + 2 s of backoff, plus start-up


def test_corrupt_video_is_a_clean_error(bundle, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 200)
    r = run_cli("demo", str(bundle), "--source", str(bad), "--headless", "--out", str(tmp_path / "out"))
    _assert_clean_failure(r, "broken.mp4", "cannot read this video")


def test_option_errors(bundle, video, tmp_path):
    with pytest.raises(DemoError, match="--headless needs"):
        run_demo(DemoOptions(bundle=bundle, source=str(video), headless=True))
    with pytest.raises(SourceError, match="no such file or folder"):
        run_demo(DemoOptions(bundle=bundle, source=str(tmp_path / "nope.mp4"), headless=True, out=tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no images or videos"):
        run_demo(DemoOptions(bundle=bundle, source=str(empty), headless=True, out=tmp_path))


def test_bench_prints_demo_and_runtime_fps(bundle, target, video, tmp_path):
    out = tmp_path / "out"
    r = run_cli("demo", str(bundle), "--source", str(video), "--target", target, "--headless", "--out", str(out),
                "--save", "none", "--bench", "--bench-rounds", "2")
    assert r.returncode == 0, r.stderr
    assert "runtime alone" in r.stdout and "ratio demo / runtime" in r.stdout
    b = json.loads((out / "bench.json").read_text())
    assert b["frames"] == N_FRAMES and b["target"] == target and b["rounds"] == 2
    assert b["demo_fps"] > 0 and b["runtime_fps"] > 0 and b["ratio"] == pytest.approx(b["demo_fps"] / b["runtime_fps"])


def test_demo_never_imports_torch(bundle, video, tmp_path):
    """The demo sits on pocketvit.runtime: with an onnx/litert target, torch must stay out of the process."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import pocketvit.demo, pocketvit.demo.app, pocketvit.demo.bench, pocketvit.demo.vectors, pocketvit.cli.demo\n"
        "from pocketvit.demo.overlay import annotate\n"
        "assert 'torch' not in sys.modules, 'importing pocketvit.demo imported torch'\n"
        "from pocketvit.runtime import Bundle\n"
        "b = Bundle.open(sys.argv[1])\n"
        "t = next((t for t in ('onnx', 'litert') if t in b.targets), None)\n"
        "if t is not None:\n"
        "    from pocketvit.demo import DemoOptions, run_demo\n"
        "    run_demo(DemoOptions(b, source=sys.argv[2], target=t, headless=True, out=Path(sys.argv[3]),\n"
        "                         max_frames=3), log=lambda m: None)\n"
        "    assert 'torch' not in sys.modules, 'running the demo on ' + t + ' imported torch'\n"
        "print('ok', t)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(bundle), str(video), str(tmp_path / "out")],
                       check=False, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stdout + r.stderr


def test_truncated_video_processes_what_decodes_and_warns(bundle, target, tmp_path):
    import numpy as np

    full = tmp_path / "full.avi"
    w = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 64))
    for i in range(20):
        w.write(np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8))  # no two alike
    w.release()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    warnings = []
    r = run_demo(DemoOptions(bundle=bundle, source=str(cut), target=target, headless=True, out=tmp_path / "out",
                             save="none"), log=lambda m: None, warn=warnings.append)
    assert 5 <= r.frames < 20
    assert len(warnings) == 1 and f"after {r.frames} of 20 frames" in warnings[0]
