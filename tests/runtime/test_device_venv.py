"""The LiteRT target in a device-like venv: numpy<2 + tflite-runtime 2.14, no torch, pocketvit with no
dependencies (tests/device/run.sh; `make test-device`). The venv (.venv-device) is built once and reused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.bench.testkit import all_targets_build
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def tiny_all(tiny_build, tmp_path_factory):
    return all_targets_build(tiny_build, tmp_path_factory)


def test_litert_target_runs_on_tflite_runtime_without_torch(tiny_all):
    python = os.environ.get("PYTHON", "python3.11")
    if shutil.which(python) is None:
        pytest.skip(f"{python} not found: tflite-runtime 2.14.0 has wheels for Python 3.11 (set PYTHON=...)")
    r = subprocess.run(
        ["bash", str(ROOT / "tests" / "device" / "run.sh"), str(tiny_all / "bundle")],
        check=False, capture_output=True, text=True, cwd=ROOT, timeout=900,
        env={**os.environ, "MAIN_PY": sys.executable, "PYTHON": python},
    )
    if r.returncode == 77:
        pytest.skip("the package index is unreachable, so the device venv (numpy<2, tflite-runtime) cannot be built: "
                    + r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "recorded 24 predictions with ai_edge_litert" in r.stdout
    assert "device check ok" in r.stdout and "tflite_runtime.interpreter" in r.stdout
    assert "numpy 1." in r.stdout and "torch not importable" in r.stdout
