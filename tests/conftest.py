"""Shared fixtures: the tiny recipe, built once per session, and small helpers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "tiny.yaml"
FMNIST = Path("/usr/share/datasets/fashion-mnist")

os.environ.setdefault("POCKETVIT_QUIET", "1")


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real `pocketvit` CLI in a subprocess (as a user would)."""
    return subprocess.run(
        [sys.executable, "-m", "pocketvit.cli.main", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd or ROOT, timeout=900,
    )


@pytest.fixture(scope="session")
def fmnist_root() -> Path:
    if not (FMNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.fail("Fashion-MNIST missing: `make test` installs Debian's dataset-fashion-mnist (make data)")
    return FMNIST


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory, fmnist_root) -> Path:
    """The tiny recipe built once through the real pipeline (teacher → cache → distill → ExecuTorch → verify)."""
    from pocketvit.pipeline.classify import run_build
    from pocketvit.recipe import load_recipe

    out = tmp_path_factory.mktemp("tiny-build")
    run_build(load_recipe(TINY), TINY, out)
    return out


@pytest.fixture
def tiny_copy(tiny_build, tmp_path) -> Path:
    dst = tmp_path / "build"
    shutil.copytree(tiny_build, dst)
    return dst
