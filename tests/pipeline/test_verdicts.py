"""pipeline/stages/verdicts.py on report entries: each figure against its tolerance, and verify.on_mismatch."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pocketvit.pipeline.stages.verdicts import enforce, judge_exit_program, judge_target

TOL = SimpleNamespace(max_abs_diff=1e-3, cosine=0.999, top1_agreement=0.99)


def _entry(max_abs_diff=1e-5, cosine=1.0, top1=1.0, runtime="onnx"):
    return {"runtime": runtime, "precision": "fp32",
            "parity": {"max_abs_diff": max_abs_diff, "cosine": cosine, "top1_agreement": top1}}


def test_each_figure_is_checked_and_named():
    v = judge_target(_entry(max_abs_diff=0.5, cosine=0.9, top1=0.5), TOL)
    assert v["status"] == "fail"
    assert v["failures"] == ["max abs diff 0.5 > 0.001", "cosine 0.900000 < 0.999", "top-1 agreement 0.5000 < 0.99"]
    assert judge_target(_entry(), TOL)["status"] == "pass"
    nan = judge_target(_entry(max_abs_diff=float("nan")), TOL)
    assert nan["status"] == "fail"  # a NaN is not within any tolerance


def test_zero_shot_has_no_top1_and_core_ml_is_not_run():
    assert judge_target(_entry(top1=0.1), TOL, zero_shot=True)["status"] == "pass"
    coreml = {"runtime": "coreml", "precision": "fp16", "parity": None, "note": "Core ML cannot execute on Linux"}
    v = judge_target(coreml, TOL)
    assert v["status"] == "not run" and "Linux" in v["note"]


def test_exit_programs_need_top1_and_decision_agreement():
    ok = {"test_top1": 0.9, "top1_agreement_with_eager": 1.0, "decision_agreement": 0.995}
    bad = {"test_top1": 0.9, "top1_agreement_with_eager": 1.0, "decision_agreement": 0.9}
    assert judge_exit_program(ok, TOL)["status"] == "pass"
    assert judge_exit_program(bad, TOL)["failures"] == ["exit decisions agree 0.9000 < 0.99"]
    assert judge_exit_program({"test_top1": None, "note": "macOS"}, TOL)["status"] == "not run"


@pytest.mark.parametrize("policy", ["fail", "drop", "keep"])
def test_policies(policy, tmp_path):
    (tmp_path / "bundle").mkdir()  # an earlier build's bundle
    targets = {"executorch": _entry(runtime="executorch"), "onnx": _entry(cosine=0.5)}
    exits = {"executorch": {"test_top1": 0.9, "top1_agreement_with_eager": 0.5, "decision_agreement": 1.0}}
    for e in targets.values():
        judge_target(e, TOL)
    judge_exit_program(exits["executorch"], TOL)
    summary, error = enforce(policy, tmp_path, targets, exits, 128)
    assert summary["failed"] == ["onnx (onnx, fp32): cosine 0.500000 < 0.999",
                                 "executorch exits (executorch, fp32): top-1 agreement 0.5000 < 0.99"]
    if policy == "fail":
        assert error is not None and error.exit_code == 6 and not (tmp_path / "bundle").exists()
        assert "over the 128-image test split" in str(error) and "verify.on_mismatch: drop" in str(error)
        assert summary["bundle"] is None
    else:
        assert error is None and (tmp_path / "bundle").exists()
        assert summary["dropped" if policy == "drop" else "kept"] == ["onnx", "executorch exits"]
        assert targets["executorch"]["verify"]["action"] == "shipped"


def test_drop_of_every_target_stops_the_build(tmp_path):
    targets = {"onnx": _entry(cosine=0.5)}
    judge_target(targets["onnx"], TOL)
    _, error = enforce("drop", tmp_path, targets, {}, 10)
    assert error is not None and "nothing to ship" in str(error)
