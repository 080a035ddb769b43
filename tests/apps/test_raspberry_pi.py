"""apps/raspberry-pi: the install script's logic (dry run), the systemd unit, and the demo on the Pi's
software stack (numpy<2, tflite-runtime, OpenCV, pocketvit --no-deps, no torch) on this machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.testkit import all_targets_build
from tests.conftest import ROOT

PI = ROOT / "apps" / "raspberry-pi"


def test_install_script_dry_run(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"files": {"litert": {"path": "model.tflite"}}}))
    assert subprocess.run(["bash", "-n", str(PI / "install.sh")], check=False).returncode == 0
    r = subprocess.run(["bash", str(PI / "install.sh"), "--dry-run", "--bundle", str(bundle), "--source", "0",
                        "--port", "8090"], check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for expected in ["apt-get install -y python3-venv", "python3-picamera2", "python3-opencv",
                     "-m venv --system-site-packages /opt/pocketvit/venv", "install numpy<2",
                     "install tflite-runtime", f"install --no-deps {ROOT}", "POCKETVIT_SOURCE=0",
                     "POCKETVIT_PORT=8090", "POCKETVIT_HOST=127.0.0.1", "systemctl enable pocketvit-demo.service"]:
        assert expected in out, expected
    assert "torch" not in out.replace("no torch", "")

    bad = subprocess.run(["bash", str(PI / "install.sh"), "--dry-run", "--bundle", str(bundle), "--target", "onnx"],
                         check=False, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no 'onnx' target" in bad.stderr


def test_service_unit_runs_the_demo_headless_with_mjpeg_on_loopback():
    unit = (PI / "pocketvit-demo.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    for flag in ["/opt/pocketvit/venv/bin/pocketvit demo", "--headless", "--mjpeg ${POCKETVIT_PORT}",
                 "--mjpeg-host ${POCKETVIT_HOST}", "--source ${POCKETVIT_SOURCE}", "--target ${POCKETVIT_TARGET}"]:
        assert flag in exec_start
    assert "Environment=POCKETVIT_HOST=127.0.0.1" in unit and "Restart=on-failure" in unit
    assert "WantedBy=multi-user.target" in unit
    if shutil.which("systemd-analyze"):
        r = subprocess.run(["systemd-analyze", "verify", str(PI / "pocketvit-demo.service")],
                           check=False, capture_output=True, text=True, timeout=60)
        assert "Unknown" not in r.stderr and "Invalid" not in r.stderr, r.stderr


def test_readme_is_honest_about_speed():
    text = (PI / "README.md").read_text()
    assert "Not measured on a Pi here" in text or "not measured on a Pi here" in text


PI_REQS = ["numpy<2", "tflite-runtime==2.14.0", "opencv-python-headless<4.12", "typer>=0.12", "rich>=13",
           "pyyaml>=6", "pydantic>=2.5", "setuptools>=68"]


def _pi_venv() -> Path:
    """.venv-pi: the Pi's Python stack from PyPI (apt's OpenCV/numpy replaced by wheels), built once."""
    python = os.environ.get("PYTHON", "python3.11")
    if shutil.which(python) is None:
        pytest.skip(f"{python} not found: tflite-runtime 2.14.0 has wheels for Python 3.11 (set PYTHON=...)")
    venv = ROOT / ".venv-pi"
    stamp = venv / ".pocketvit-pi"
    if not stamp.exists() or stamp.read_text() != "\n".join(PI_REQS):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
        r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *PI_REQS],
                           check=False, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            pytest.skip(f"cannot build the Pi-like venv from the package index: {r.stderr.strip()[-400:]}")
        stamp.write_text("\n".join(PI_REQS))
    return venv


@pytest.mark.slow
def test_demo_on_the_pi_stack_without_torch(tiny_build, tmp_path_factory, tmp_path):
    pytest.importorskip("cv2", reason="the demo needs OpenCV in the main venv too: pip install 'pocketvit[demo]'")

    bundle = all_targets_build(tiny_build, tmp_path_factory) / "bundle"
    venv = _pi_venv()
    # install.sh's step 3: pocketvit itself, no dependencies (a fresh copy of this checkout each run).
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--no-build-isolation",
                        "--force-reinstall", str(ROOT)], check=False, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         ("import importlib.util as u, numpy; print(numpy.__version__, bool(u.find_spec('torch')), "
          "bool(u.find_spec('ai_edge_litert')), bool(u.find_spec('tflite_runtime')))")],
        check=True, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    ).stdout.split()
    assert probe[0].startswith("1.") and probe[1:] == ["False", "False", "True"], probe

    from tests.demo.conftest import N_FRAMES

    video = tmp_path / "clip.mp4"
    _write_video(video)
    results = {}
    for name, exe in [("pi", venv / "bin" / "pocketvit"), ("main", Path(sys.executable).parent / "pocketvit")]:
        out = tmp_path / name
        r = subprocess.run([str(exe), "demo", str(bundle), "--target", "litert", "--source", str(video),
                            "--headless", "--out", str(out)],
                           check=False, capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        lines = [json.loads(x) for x in (out / "frames.jsonl").read_text().splitlines()]
        assert len(lines) == N_FRAMES and len(list((out / "frames").glob("*.jpg"))) == N_FRAMES
        results[name] = (r.stderr, [x["label"] for x in lines])
    assert "tflite_runtime.interpreter" in results["pi"][0]
    assert "ai_edge_litert.interpreter" in results["main"][0]
    assert results["pi"][1] == results["main"][1]


def _write_video(path: Path) -> None:
    import gzip

    import numpy as np

    from tests.demo.conftest import SIDE, _cv2, upscale

    cv2 = _cv2()

    with gzip.open(Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:20]
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (SIDE, SIDE))
    for img in images:
        w.write(upscale(img))
    w.release()
