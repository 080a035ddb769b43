"""floor.py: XNNPACK operator events sorted into int8 / float kernels, and the analysis of a real bundle."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")


def test_kernel_classes_of_xnnpack_events():
    from benchmarks.int8_floor import kernel_class

    assert kernel_class("Fully Connected (NC, QS8, QC8W) GEMM #3", True) == "int8"
    assert kernel_class("Convolution (NHWC, QC8) DWConv", True) == "int8"
    assert kernel_class("Invalid Unary Op #2", True) == "int8"  # XNNPACK's name for an int8 lookup-table GELU
    assert kernel_class("Softmax (NC, F32)", True) == "float"
    assert kernel_class("Batch Matrix Multiply (NC, F32, QC8W) GEMM", True) == "float"  # float activations
    assert kernel_class("Convert (NC)", True) == "convert"
    assert kernel_class("Add (ND) #4", True) == "other"
    assert kernel_class("GELU (NC)", False) == "float"  # everything in an fp32 program is float


@pytest.mark.slow
def test_floor_analysis_of_a_tiny_bundle(tmp_path):
    """Real fp32 and int8 .pte files of a tiny TinyViT in a minimal bundle: times, profile, size floor."""
    from pocketvit.export.executorch import export_executorch
    from pocketvit.export.quantize import ExecuTorchInt8, quantize_export
    from pocketvit.models.tinyvit import TinyViTConfig, TinyViTStudent

    from benchmarks.int8_floor import analyse, format_analysis

    torch.manual_seed(0)
    m = TinyViTStudent(TinyViTConfig(img_size=16, stem_dim=8, dims=[16], depths=[1], heads=[1])).eval()
    x = torch.rand(32, 1, 16, 16)
    export_executorch(m, x[:1], tmp_path / "model.pte")
    quantize_export(m, x[:1], x, ExecuTorchInt8(), tmp_path / "model-int8.pte")
    files = {"executorch": {"path": "model.pte"}, "executorch-int8": {"path": "model-int8.pte"}}
    manifest = {"files": files, "labels": [str(i) for i in range(10)],
                "input": {"channels": 1, "height": 16, "width": 16}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    a = analyse(tmp_path, runs=60, profile_runs=30)
    assert set(a["median_us"]) == {"executorch", "executorch-int8", "call floor", "node floor"}
    assert a["kernel_us_by_class"]["executorch-int8"].get("int8", 0) > 0  # XNNPACK profiled its int8 kernels
    s = a["size"]
    # at this size the int8 file is no smaller than fp32 (structure outweighs weights); the floor still is
    assert 0 < s["floor_bytes"] <= s["int8_bytes"] and s["int8_payload_bytes"] < s["fp32_bytes"]
    assert "call floor" in format_analysis(a)
