"""Failures: clear ExportError / MissingExtraError, atomic writes, lazy imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pocketvit.errors import ExportError, MissingExtraError
from pocketvit.export import export_model
from pocketvit.export._common import atomic_path, lowering_error, offending_op, require

torch = pytest.importorskip("torch")
nn = torch.nn


class Inverse(nn.Module):
    """torch.linalg.inv is not in the Core ATen opset: ExecuTorch's edge dialect refuses it."""

    def forward(self, x):
        return torch.linalg.inv(x[0, 0, :4, :4] + 4 * torch.eye(4))


class DataDependent(nn.Module):
    """Python control flow on a tensor's value: torch.export cannot capture it."""

    def forward(self, x):
        if torch.nonzero(x > 0).shape[0] > 3:
            return x * 2
        return x


def _no_leftovers(folder: Path):
    return list(folder.iterdir()) == []


def test_executorch_names_target_and_operator(tmp_path):
    with pytest.raises(ExportError) as ei:
        export_model(Inverse(), torch.randn(1, 1, 8, 8), "executorch", tmp_path, model_name="inv-net")
    msg = str(ei.value)
    assert "inv-net" in msg and "executorch" in msg
    assert "aten.linalg_inv_ex" in msg
    assert "--debug" in msg and "onnx" in msg  # what to try
    assert ei.value.__cause__ is not None
    assert ei.value.target == "executorch"
    assert _no_leftovers(tmp_path)


def test_data_dependent_control_flow_fails_clearly(tmp_path):
    with pytest.raises(ExportError) as ei:
        export_model(DataDependent(), torch.randn(1, 3, 8, 8), "executorch", tmp_path, model_name="dd")
    msg = str(ei.value)
    assert "'dd'" in msg and "executorch" in msg and "torch.export" in msg
    assert ei.value.__cause__ is not None
    assert _no_leftovers(tmp_path)


def test_unknown_target(tmp_path):
    with pytest.raises(ExportError, match="Unknown export target 'tensorrt'"):
        export_model(nn.Identity(), torch.randn(1, 3, 8, 8), "tensorrt", tmp_path)


def test_failure_mid_write_leaves_no_file(tmp_path, monkeypatch):
    from executorch.exir import ExecutorchProgramManager

    def half_write(self, f):
        f.write(b"\x00" * 128)
        raise OSError("disk full")

    monkeypatch.setattr(ExecutorchProgramManager, "write_to_file", half_write)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    with pytest.raises(ExportError, match="disk full") as ei:
        export_model(model, torch.randn(1, 3, 8, 8), "executorch", tmp_path, name="m")
    assert isinstance(ei.value.__cause__, OSError)
    assert not (tmp_path / "m.pte").exists()
    assert _no_leftovers(tmp_path)


def test_failure_keeps_previous_file(tmp_path, monkeypatch):
    import pocketvit.export.onnx as onnx_mod

    final = tmp_path / "m.onnx"
    final.write_bytes(b"previous good file")

    def broken(model, args, tmp, opset):
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("boom")

    monkeypatch.setattr(onnx_mod, "_export_dynamo", broken)
    monkeypatch.setattr(onnx_mod, "_export_torchscript", broken)
    with pytest.raises(ExportError, match="onnx"):
        export_model(nn.ReLU(), torch.randn(1, 3, 4, 4), "onnx", tmp_path, name="m")
    assert final.read_bytes() == b"previous good file"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_atomic_path_file_and_folder(tmp_path):
    final = tmp_path / "a.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed")
    assert _no_leftovers(tmp_path)

    with atomic_path(final) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".bin" and tmp != final
        tmp.write_bytes(b"ok")
    assert final.read_bytes() == b"ok"

    pkg = tmp_path / "m.mlpackage"
    (pkg / "stale").mkdir(parents=True)
    with atomic_path(pkg) as tmp:
        assert tmp.suffix == ".mlpackage"
        (tmp / "Data").mkdir(parents=True)
        (tmp / "Manifest.json").write_text("{}")
    assert sorted(p.name for p in pkg.iterdir()) == ["Data", "Manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "m.mlpackage"]

    with pytest.raises(ExportError, match="wrote nothing"):
        with atomic_path(tmp_path / "never.bin"):
            pass


def test_offending_op_patterns():
    assert offending_op("Unsupported fx node alias") == "alias"
    text = "Operator torch._ops.aten._unique2.default is not in Core ATen"
    assert offending_op(text) == "aten._unique2.default"
    assert offending_op("'tfl.mul' op operands don't have broadcast-compatible shapes") == "tfl.mul"
    assert offending_op("PyTorch convert function for op 'foo_bar' not implemented.") == "foo_bar"
    assert offending_op("something else entirely") is None
    err = lowering_error("m", "litert", ValueError("'tfl.mul' op operands don't broadcast"))
    assert "at tfl.mul" in str(err) and "litert" in str(err) and "executorch" in str(err)


def test_missing_toolchain_names_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "coremltools", None)  # makes `import coremltools` fail
    with pytest.raises(MissingExtraError, match=r"pocketvit\[coreml\]"):
        require("coremltools", "coreml", "needed to write .mlpackage files")


def test_missing_toolchain_from_export_model(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "litert_torch", None)
    with pytest.raises(MissingExtraError, match=r"pocketvit\[litert\]"):
        export_model(nn.ReLU(), torch.randn(1, 3, 4, 4), "litert", tmp_path)


def test_import_is_lazy():
    code = (
        "import sys, pocketvit.export, pocketvit.export.prepare, pocketvit.export.executorch\n"
        "import pocketvit.export.onnx, pocketvit.export.litert, pocketvit.export.coreml\n"
        "from pocketvit.export import *\n"
        "heavy = [m for m in ('torch', 'executorch', 'litert_torch', 'coremltools', 'onnx', 'timm') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = dict(os.environ)
    sdk = str(Path(__file__).resolve().parents[2] / "sdk")
    env["PYTHONPATH"] = sdk + os.pathsep + env.get("PYTHONPATH", "")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_coreml_refuses_value_dependent_trace(tmp_path):
    """torch.export refuses the branch, and the torch.jit.trace fallback must not freeze it silently."""
    pytest.importorskip("coremltools")
    with pytest.raises(ExportError) as ei:
        export_model(DataDependent(), torch.randn(1, 3, 8, 8), "coreml", tmp_path, model_name="dd")
    msg = str(ei.value)
    assert "coreml" in msg and "torch.jit.trace route failed too" in msg and "tensor values" in msg
    assert _no_leftovers(tmp_path)
