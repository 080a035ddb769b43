"""`pocketvit build` with int8 targets on the tiny recipe: plan, exports, verify on each runtime, report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import TINY


@pytest.mark.slow
def test_build_adds_verified_int8_targets(tmp_path, fmnist_root):
    from pocketvit.pipeline.classify import run_build
    from pocketvit.recipe import load_recipe
    from pocketvit.runtime import load

    recipe = load_recipe(TINY)
    recipe.export.targets = ["executorch", "executorch-int8", "litert-int8", "onnx-int8", "coreml-int8"]
    recipe.quantize.calibration_images = 32
    recipe.quantize.held_out_images = 64
    report = run_build(recipe, TINY, tmp_path)
    t = report["targets"]
    for name in ("executorch-int8", "litert-int8", "onnx-int8"):
        assert t[name]["precision"] == "int8" and 0 <= t[name]["test_top1"] <= 1
        assert t[name]["parity"]["top1_agreement"] >= 0.9
        assert t[name]["export_info"]["plan"]["calibration"]["split"] == "train"
    assert t["coreml-int8"]["test_top1"] is None and t["coreml-int8"]["export_info"]["spec_check"]["ok"]
    assert t["executorch-int8"]["bytes"] < t["executorch"]["bytes"]
    m = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert m["files"]["litert-int8"]["path"] == "model-int8.tflite" and m["files"]["litert-int8"]["precision"] == "int8"
    p = load(tmp_path / "bundle", target="litert-int8")
    assert p.predict(np.full((28, 28), 90, np.uint8), input_color="GRAY").label in m["labels"]
    md = (tmp_path / "report.md").read_text()
    assert "## int8" in md and "Accuracy vs latency" in md
    assert (tmp_path / "plots" / "accuracy_vs_latency.png").stat().st_size > 1000


@pytest.mark.slow
def test_build_with_qat_and_palettized_coreml(tmp_path, fmnist_root):
    """quantize.qat: always trains under fake quantization from the teacher cache; the PT2E int8 files are made
    from the QAT weights and say so; quantize.coreml: palettize writes a smaller lookup-table package."""
    from pocketvit.pipeline.classify import run_build
    from pocketvit.recipe import load_recipe

    recipe = load_recipe(TINY)
    recipe.export.targets = ["executorch", "executorch-int8", "litert-int8", "coreml", "coreml-int8"]
    q = recipe.quantize
    q.calibration_images, q.held_out_images, q.qat, q.qat_epochs = 32, 64, "always", 1
    q.coreml, q.coreml_nbits = "palettize", 6
    # one QAT epoch of a tiny model on 320 images: int8 agrees with fp32 on ~95% of the test images, so the build's
    # int8 tolerance is set to what this test asserts (the default 0.98 would stop the build: verify.on_mismatch)
    q.tolerance = q.tolerance.model_copy(update={"cosine": 0.98, "top1_agreement": 0.9})
    report = run_build(recipe, TINY, tmp_path)
    assert report["verify"]["passed"], report["verify"]
    t = report["targets"]
    for name in ("executorch-int8", "litert-int8"):
        qat = t[name]["export_info"]["qat"]
        assert qat["ran"] and qat["mode"] == "always" and qat["loss"].startswith("distillation")
        assert qat["used"] and qat["use"].startswith("QAT weights used")  # always: shipped
        assert 0 <= qat["before"]["top1"] <= 1 and 0 <= qat["after"]["top1"] <= 1
        assert t[name]["parity"]["top1_agreement"] >= 0.9
    assert not report["stages"]["quantize-qat"]["cached"]
    pal = t["coreml-int8"]["export_info"]
    assert pal["palettized_weight_ops"] > 0 and pal["bytes"] < pal["fp16_bytes"] and pal["nbits"] == 6
    md = (tmp_path / "report.md").read_text()
    assert "QAT (quantize.qat: always): ran" in md and "coreml-int8 is palettized" in md
    # a second build reuses every stage, QAT included
    again = run_build(recipe, TINY, tmp_path)
    assert all(s["cached"] for n, s in again["stages"].items() if n.startswith(("quantize", "export")))
