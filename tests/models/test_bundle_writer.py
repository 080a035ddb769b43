"""export/bundle.py without a toolchain: writing, refreshing and pruning a bundle; the backend summaries."""

from __future__ import annotations

import json

import pytest
from pocketvit.errors import OutputError
from pocketvit.export import ExportedFile
from pocketvit.export.bundle import bundle_file_name, check_out_dir, write_bundle_dir
from pocketvit.export.describe import backend_summary
from pocketvit.runtime import Bundle

SPEC = {"height": 8, "width": 8, "channels": 3, "color_order": "RGB", "resize": 8, "crop": [8, 8],
        "scale": 1 / 255, "mean": [0.5] * 3, "std": [0.5] * 3}
SOURCE = {"arch": "pocketvit-resnet", "options": {}, "in_chans": 3, "num_classes": 2, "img_size": 8}


def _files(tmp_path, names):
    out = []
    for target, fname in names:
        p = tmp_path / "staging" / fname
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(fname.encode() * 10)
        out.append(ExportedFile(target, p, target.split("-")[0], "fp32"))
    return out


def test_write_refresh_and_prune(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"weights")
    bundle = tmp_path / "bundle"
    files = _files(tmp_path, [("onnx", "model.onnx"), ("litert", "model.tflite"), ("onnx-int8", "model.onnx")])
    m = write_bundle_dir(bundle, name="t", files=files, labels=["a", "b"], input_spec=SPEC, source=SOURCE,
                         reference_weights=weights, card=lambda man: f"# {man['name']}\n", extra={"provenance": {}})
    assert set(m["files"]) == {"onnx", "litert", "onnx-int8"} and m["files"]["onnx-int8"]["path"] == "model-int8.onnx"
    assert (bundle / "reference/weights.safetensors").read_bytes() == b"weights"
    assert (bundle / "README.md").read_text() == "# t\n" and "provenance" in m
    Bundle.open(bundle, verify=True)
    assert (tmp_path / "staging" / "model.onnx").exists()  # copied, not moved, by default

    # a second export with other targets replaces the bundle and removes the files no longer listed
    files = _files(tmp_path, [("executorch", "model.pte")])
    write_bundle_dir(bundle, name="t", files=files, labels=["a", "b"], input_spec=SPEC, source=SOURCE,
                     reference_weights=weights, move=True)
    assert sorted(p.name for p in bundle.iterdir()) == ["README.md", "manifest.json", "model.pte", "reference"]
    assert set(json.loads((bundle / "manifest.json").read_text())["files"]) == {"executorch"}
    assert not (tmp_path / "staging" / "model.pte").exists()


def test_out_dir_checks(tmp_path):
    check_out_dir(tmp_path / "new")  # fine: created later
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a pocketvit bundle"):
        check_out_dir(tmp_path / "other")
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        check_out_dir(tmp_path / "f")


def test_names_and_backend_summaries(tmp_path):
    assert bundle_file_name("executorch", tmp_path / "model.pte") == "model.pte"
    assert bundle_file_name("litert-int8", tmp_path / "model.tflite") == "model-int8.tflite"
    s = backend_summary("executorch", {"delegate_calls": 3, "nodes_delegated": 40, "nodes_outside": 5,
                                       "outside_ops": {"aten.native_layer_norm.default": 2,
                                                       "aten.native_layer_norm.out": 1, "aten.mul.Scalar": 2}})
    assert s.startswith("3 XNNPACK delegate call(s), 40 node(s) delegated, 5 outside")
    assert "native_layer_norm x3" in s and "mul x2" in s
    assert backend_summary("executorch", {"delegate_calls": 1, "nodes_delegated": 9, "nodes_outside": 0}).endswith(
        "(whole graph delegated)")
    assert backend_summary("litert", {"ops": {"CONV_2D": 3, "MEAN": 1}}) == "4 op(s): CONV_2D x3, MEAN x1"
    assert backend_summary("onnx", {"opset": 18, "nodes": 4, "ops": {"Conv": 4}}).startswith("opset 18, 4 node(s)")
    assert "not executable on Linux" in backend_summary("coreml", {"frontend": "torch.export", "spec_check": {"ok": True}})
