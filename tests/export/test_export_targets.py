"""Export tiny models to every target and run each file on its own runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest
from export_testkit import RUNNERS, eager
from pocketvit.export import TARGETS, ExportedFile, export_model, file_extension

torch = pytest.importorskip("torch")

EXECUTABLE = ("executorch", "litert", "onnx")
CASES = [
    ("tiny_conv", "executorch"),
    ("tiny_conv", "litert"),
    ("tiny_conv", "onnx"),
    ("tiny_vit", "executorch"),
    ("tiny_vit", "litert"),
    ("tiny_vit", "onnx"),
    ("tiny_vit_gray", "onnx"),
    ("tiny_vit_gray", "executorch"),
]


@pytest.mark.parametrize("model_key,target", CASES)
def test_export_runs_on_target_runtime(tiny_models, tmp_path, model_key, target):
    model, x = tiny_models[model_key]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ref = eager(model, x)

    f = export_model(model, x, target, tmp_path, name=model_key, model_name=model_key)

    assert isinstance(f, ExportedFile)
    assert f.target == target and f.runtime == target and f.precision == "fp32"
    assert f.path == tmp_path / f"{model_key}{file_extension(target)}"
    assert f.path.is_file() and f.path.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f.path.name], "temporary files left behind"
    json.dumps(f.to_dict())  # info is JSON-serialisable
    # The caller's model is untouched (still eval, same weights).
    assert not model.training
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())

    out = RUNNERS[target](f.path, x)
    assert out.shape == ref.shape
    assert float(np.abs(out - ref).max()) < 1e-4
    assert out.argmax() == ref.argmax()


def test_executorch_info_counts_delegation(tiny_models, tmp_path):
    model, x = tiny_models["tiny_vit"]
    info = export_model(model, x, "executorch", tmp_path).info
    assert info["delegate_calls"] >= 1
    assert info["nodes_outside"] == sum(info["outside_ops"].values())
    assert all(op.startswith("aten.") for op in info["outside_ops"])
    # The layernorm-as-linear rewrite takes LayerNorm inside XNNPACK; without it, it stays outside
    # with this toolchain (TOOLCHAINS.md) and the graph has more nodes outside the delegate.
    assert "aten.native_layer_norm.default" not in info["outside_ops"]
    assert info["rewrites"] == {"layernorm-as-linear": 3}
    assert info["nodes_delegated"] > 0
    from pocketvit.export.executorch import export_executorch

    raw = export_executorch(model, x, tmp_path / "raw.pte", disabled_rewrites=("all",)).info
    assert raw["outside_ops"].get("aten.native_layer_norm.default", 0) == 3 and raw["rewrites"] == {}
    assert raw["nodes_outside"] > info["nodes_outside"]

    # The tiny CNN pools with x.mean((2, 3)): XNNPACK takes mean only with keepdim=True, so it is cut in
    # two around one portable mean. The info says exactly that.
    conv, xc = tiny_models["tiny_conv"]
    cinfo = export_model(conv, xc, "executorch", tmp_path, name="conv").info
    assert cinfo["outside_ops"] == {"aten.mean.dim": 1} and cinfo["delegate_calls"] == 2

    class KeepdimPool(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean((2, 3), keepdim=True).flatten(1))

    kinfo = export_model(KeepdimPool(), xc, "executorch", tmp_path, name="keepdim").info
    assert kinfo["delegate_calls"] == 1 and kinfo["nodes_outside"] == 0


def test_onnx_info(tiny_models, tmp_path):
    model, x = tiny_models["tiny_conv"]
    info = export_model(model, x, "onnx", tmp_path).info
    assert info["opset"] >= 17
    assert info["nodes"] == sum(info["ops"].values()) > 0
    assert info["inputs"] == ["input"] and info["outputs"] == ["output"]


def test_litert_info(tiny_models, tmp_path):
    model, x = tiny_models["tiny_conv"]
    info = export_model(model, x, "litert", tmp_path).info
    assert info["ops"].get("CONV_2D", 0) + info["ops"].get("DEPTHWISE_CONV_2D", 0) >= 2
    assert info["signatures"]["serving_default"]["inputs"] == ["args_0"]
    assert info["delegate_calls"] == 1 and info["ops_outside"] == 0  # the whole graph runs in XNNPACK


@pytest.mark.parametrize("model_key", ["tiny_conv", "tiny_vit"])
def test_coreml_converts_and_passes_spec_check(tiny_models, tmp_path, model_key):
    pytest.importorskip("coremltools")
    model, x = tiny_models[model_key]
    f = export_model(model, x, "coreml", tmp_path, name=model_key)
    assert f.path.suffix == ".mlpackage" and f.path.is_dir()
    assert (f.path / "Manifest.json").is_file()
    assert f.runtime == "coreml" and f.precision == "fp16"
    assert f.info["executed"] is False
    check = f.info["spec_check"]
    assert check["ok"] and check["model_type"] == "mlProgram"
    assert check["inputs"] == {"input": list(x.shape)}
    assert "output" in check["outputs"]
    assert check["mil_ops"]
    json.dumps(f.to_dict())
    assert sorted(p.name for p in tmp_path.iterdir()) == [f.path.name]


def test_targets_and_extensions():
    assert TARGETS == ("executorch", "litert", "coreml", "onnx")
    assert [file_extension(t) for t in TARGETS] == [".pte", ".tflite", ".mlpackage", ".onnx"]
    assert set(EXECUTABLE) | {"coreml"} == set(TARGETS)
