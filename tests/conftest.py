"""Shared fixtures: the tiny recipe, built once per session, and small helpers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def onnx_classifier(path: Path) -> None:
    """8x8 gray image -> 3 logits (flatten, matmul, add): a real ONNX graph, made without torch."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((64, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(3, np.float32), "b")
    shape = numpy_helper.from_array(np.array([1, 64], np.int64), "shape")
    nodes = [helper.make_node("Reshape", ["input", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["mm"]),
             helper.make_node("Add", ["mm", "b"], ["logits"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])], [w, b, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
