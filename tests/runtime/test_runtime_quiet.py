"""The runtime API does not print, and never falls back silently (runtime/quiet.py, Backend.fallbacks)."""

from __future__ import annotations

import os
import sys

import pytest

from tests.conftest import onnx_classifier


def test_quiet_captures_what_c_code_and_python_write_then_restores_the_descriptor(capfd):
    from pocketvit.runtime.quiet import quiet

    log: list[str] = []
    with quiet(log):
        os.write(2, b"[cpuinfo_utils.cpp:71] a C++ line on descriptor 2\n")
        print("a line through Python's sys.stderr", file=sys.stderr)
    os.write(2, b"after the block\n")
    err = capfd.readouterr().err
    assert "cpuinfo" not in err and "sys.stderr" not in err  # nothing reached the terminal
    assert err == "after the block\n"  # descriptor 2 is back
    assert log == ["[cpuinfo_utils.cpp:71] a C++ line on descriptor 2", "a line through Python's sys.stderr"]


def test_verbose_lets_it_through(capfd, monkeypatch):
    from pocketvit.runtime.quiet import quiet

    monkeypatch.setenv("POCKETVIT_VERBOSE", "1")
    log: list[str] = []
    with quiet(log):
        os.write(2, b"loud\n")
    assert capfd.readouterr().err == "loud\n" and log == []


def test_warnings_in_a_captured_log_become_fallbacks():
    from pocketvit.runtime.quiet import warnings_in

    log = ["INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
           "WARNING: Attempting to use a delegate that only supports static-sized tensors",
           "E0000 00:00:1.0 1 delegate.cc:1] Failed to apply XNNPACK delegate",
           "[cpuinfo_utils.cpp:87] Failed to open midr file"]
    assert warnings_in(log) == log[1:3]


def test_an_onnx_provider_that_cannot_run_is_a_recorded_fallback(tmp_path, capfd):
    """Asked for CUDA on a CPU-only onnxruntime: it runs on the CPU, says so in fallbacks, prints nothing."""
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort
    from pocketvit.runtime import open_backend

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: no fallback to see")
    onnx_classifier(tmp_path / "m.onnx")
    b = open_backend("onnx", tmp_path / "m.onnx", providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    info = b.describe()
    assert info["providers"] == ["CPUExecutionProvider"]
    assert len(info["fallbacks"]) == 1 and "CUDAExecutionProvider" in info["fallbacks"][0]
    plain = open_backend("onnx", tmp_path / "m.onnx")
    assert plain.describe()["fallbacks"] == [] and plain.describe()["providers"] == ["CPUExecutionProvider"]
    assert capfd.readouterr().err == ""
