"""Known toolchain failures (export/known_issues.py): matched by their text, explained with the upstream issue and
pocketvit's workaround, and a failed target's message names the targets that did export."""

from __future__ import annotations

import pytest
from pocketvit.export.known_issues import KNOWN_ISSUES, explain, known_issue

ALIAS = "Could not export 'g' to coreml at alias during ...: NotImplementedError: Unsupported fx node alias, kind alias"
TFL_MUL = ("Could not export 'm' to litert at tfl.mul during litert_torch.convert: ValueError: Failed to run converter "
           "passes: mobilevit.py:400:0: error: 'tfl.mul' op operands don't have broadcast-compatible shapes")


def test_known_issues_match_by_runtime_and_text():
    assert known_issue("coreml", ALIAS).link.endswith("coremltools/issues/2517")
    assert known_issue("coreml-dropin", ALIAS) is known_issue("coreml", ALIAS)  # every target of the runtime
    assert "linear-attention-broadcast" in known_issue("litert-int8", TFL_MUL).workaround
    assert known_issue("executorch", TFL_MUL) is None and known_issue("litert", "something else") is None
    assert all(i.summary and i.toolchain for i in KNOWN_ISSUES)


def test_explain_names_the_issue_and_what_worked():
    text = explain("litert", TFL_MUL, ["executorch", "litert", "onnx"])
    assert text.startswith(TFL_MUL)
    assert "Known litert-torch 0.10 issue" in text and "Workaround: the rewrite linear-attention-broadcast" in text
    assert text.endswith("Exported for this model instead: executorch, onnx.")
    assert explain("onnx", "boom", []).endswith("No other target exported for this model either.")


def test_failed_target_names_the_issue_and_the_target_that_worked(tmp_path):
    """MobileViTv2-style attention with its LiteRT rewrite switched off: litert fails, the bundle is written with
    coreml, the failure says why and what worked, and nothing of litert is left behind."""
    pytest.importorskip("litert_torch")
    pytest.importorskip("coremltools")
    from export_testkit import mobilevitv2_like
    from pocketvit.models.sources import ResolvedModel
    from pocketvit.pipeline.export_model import export_to_bundle

    model, _ = mobilevitv2_like()
    spec = {"height": 32, "width": 32, "channels": 3, "layout": "NCHW", "dtype": "float32", "color_order": "RGB",
            "resize": 32, "crop": [32, 32], "scale": 1 / 255, "mean": [0.0] * 3, "std": [1.0] * 3}
    resolved = ResolvedModel(spec="m", kind="local", name="m", model=model, input=spec, labels=list("abcde"),
                             source={"arch": "test"}, description="MobileViTv2-like", weights="random",
                             license="test only")
    out = tmp_path / "bundle"
    result = export_to_bundle(resolved, ["litert", "coreml"], out, dropin=[], n_inputs=2, latency_runs=2,
                              disabled_rewrites=("linear-attention-broadcast",))
    msg = result["failed"]["litert"]
    assert "tfl.mul" in msg and "Known litert-torch 0.10 issue" in msg
    assert msg.endswith("Exported for this model instead: coreml.")
    assert result["targets"]["litert"]["error"] == msg
    assert not any(p.suffix == ".tflite" or p.name.startswith(".") for p in out.iterdir())
