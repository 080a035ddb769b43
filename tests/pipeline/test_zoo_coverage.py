"""The zoo's coverage matrix (pipeline/zoo_coverage.py, report/zoo_coverage.py): cells from export results, rows
merged pass by pass, the evidence files and the docs table; and one real model through the worker process (slow)."""

from __future__ import annotations

import json

import pytest
from pocketvit.bench.measure import CONSTANT_OUTPUT
from pocketvit.pipeline.zoo_coverage import COLUMNS, ZOO, classify, merge, run_coverage, with_known_issues
from pocketvit.report.zoo_coverage import render, totals, write_evidence

TFL_MUL = ("Could not export 'm' to litert at tfl.mul during litert_torch.convert: ValueError: 'tfl.mul' op operands "
           "don't have broadcast-compatible shapes\nTry another target ...\nKnown litert-torch 0.10 issue: ...\n"
           "Exported for this model instead: executorch, onnx.")


def test_the_zoo_covers_at_least_30_families():
    assert len({m.family for m in ZOO}) >= 30 and len({m.name for m in ZOO}) == len(ZOO)


def test_cells_from_export_results():
    failed = classify("litert", {"status": "failed", "error": TFL_MUL, "seconds": 3.0})
    assert failed["status"] == "failed" and failed["operator"] == "tfl.mul"
    assert failed["issue"]["toolchain"] == "litert-torch 0.10" and failed["works_instead"] == ["executorch", "onnx"]
    coreml = classify("coreml-dropin", {"status": "not run", "backend": {
        "frontend": "torch.jit.trace", "fallback_reason": "NotImplementedError: alias", "spec_check": {"ok": True}}})
    assert coreml["status"] == "ok" and coreml["workarounds"][0].startswith("torch.jit.trace route")
    rewritten = classify("litert", {"status": "ok", "backend": {"rewrites": {"linear-attention-broadcast": 2,
                                                                             "layernorm-keepdim": 3}},
                                    "parity": {"max_abs_diff": 1e-6, "cosine": 1.0, "top1_agreement": 1.0}})
    assert rewritten["workarounds"] == ["rewrite linear-attention-broadcast"]  # speed rewrites are not workarounds
    int8 = classify("onnx-int8", {"status": "parity failed", "parity": {"cosine": 0.9, "failures": ["cosine 0.9"]}})
    assert int8["status"] == "runs"  # random weights and calibration: ran, outside the int8 tolerance
    zeros = classify("litert-int8", {"status": "parity failed", "parity": {"cosine": 0.0, "failures": [
        f"{CONSTANT_OUTPUT} (every value is 0)", "cosine 0.000000 < 0.98"]}})
    assert zeros["status"] == "failed" and zeros["reason"].startswith(CONSTANT_OUTPUT)  # broken, not inaccurate
    mended = classify("executorch-int8", {"status": "ok", "backend": {"quantizer_mends": {"pad-shares-scale": 2}},
                                          "parity": {"max_abs_diff": 0.1, "cosine": 0.99, "top1_agreement": 1.0}})
    assert mended["mends"] == ["pad-shares-scale"] and "workarounds" not in mended  # listed apart, not as ok†
    fp32 = classify("onnx", {"status": "parity failed", "parity": {"cosine": 0.9, "failures": ["cosine 0.9"]}})
    assert fp32 == {**fp32, "status": "failed", "reason": "cosine 0.9"}


def _row(name, size, cells, seconds=10.0):
    return {"model": name, "family": name.upper(), "size": size, "seconds": seconds, "params_m": 1.0,
            "targets": cells}


def test_rows_merge_pass_by_pass():
    first = merge(None, _row("m", 64, {"onnx": {"status": "ok"}, "litert": {"status": "failed", "reason": "x"}}))
    second = merge(first, _row("m", 64, {"litert": {"status": "ok"}, "executorch": {"status": "ok"}}, 5.0))
    assert {t: c["status"] for t, c in second["targets"].items()} == {"executorch": "ok", "litert": "ok", "onnx": "ok"}
    assert second["seconds"] == 15.0 and len(second["passes"]) == 2
    assert list(second["targets"]) == [t for t in COLUMNS if t in second["targets"]]  # the matrix's column order


def test_failures_recorded_before_their_issue_was_known_get_it():
    cell = {"status": "failed", "reason": "Could not export 'm' to coreml at addcmul during coremltools.convert: "
                                          "NotImplementedError: Unsupported fx node addcmul, kind addcmul"}
    rows = with_known_issues([_row("m", 64, {"coreml-dropin": dict(cell), "onnx": {"status": "ok"}})])
    issue = rows[0]["targets"]["coreml-dropin"]["issue"]
    assert "addcmul-as-mul-add" in issue["workaround"] and rows[0]["targets"]["coreml-dropin"]["reason"] == cell["reason"]


def test_evidence_and_docs_table(tmp_path):
    ok = {t: {"status": "ok"} for t in COLUMNS}
    rows = [_row("a", 64, ok), _row("b", 64, {**ok, "litert": classify("litert", {"status": "failed",
                                                                               "error": TFL_MUL})}),
            _row("b", 224, {**ok, "litert-int8": {"status": "ok", "mends": ["drop-non-float"]}}),
            _row("c", 224, {**ok, "coreml": {"status": "ok", "workarounds": ["torch.jit.trace"]}})]
    small = {"b": 64, "a": 64, "c": 224}  # c accepts nothing smaller than 224: its 224 row is its small one
    t = totals(rows[:2])
    assert t["litert"] == {"ok": 1, "worked_around": 0, "ran": 0, "failed": 1, "models": 2}
    text = render(rows, small)
    small_table, big_table = text.split("### 224 x 224")
    assert small_table.index("| b |") < small_table.index("| a |") and "| c |" in small_table
    assert "fails [1]" in small_table and "works instead: executorch, onnx" in small_table
    assert "ok†" in big_table and "† Worked around" in big_table
    assert "- litert-int8: drop-non-float: b\n" in big_table and "| b | B | 224 |" in big_table
    page = tmp_path / "zoo.md"
    page.write_text("# Zoo\n\nintro\n<!-- zoo-coverage:start -->\nold\n<!-- zoo-coverage:end -->\nafter\n")
    write_evidence(rows, tmp_path, page, small)
    data = json.loads((tmp_path / "zoo-coverage.json").read_text())
    assert set(data["totals"]) == {"small", "224"} and data["totals"]["small"]["litert"]["failed"] == 1
    assert data["meta"]["toolchains"]["timm"] and data["meta"]["run_seconds"]["224"] == 20.0
    body = page.read_text()
    assert "old" not in body and body.startswith("# Zoo\n\nintro\n") and body.endswith("after\n")
    assert "| b |" in body and (tmp_path / "zoo-coverage.md").read_text().startswith("# Zoo coverage")
    # the Targets link resolves from where each text is written: the page beside targets.md, the evidence in
    # docs/results one level down, and evidence written outside the docs names the page instead of linking it
    assert "](targets.md#mends-to-the-pt2e-quantizers)" in body
    results = tmp_path / "results"
    write_evidence(rows, results, page, small)
    assert "](../targets.md#mends-to-the-pt2e-quantizers)" in (results / "zoo-coverage.md").read_text()
    elsewhere = tmp_path.parent / f"{tmp_path.name}-runs"
    write_evidence(rows, elsewhere, page, small)
    outside = (elsewhere / "zoo-coverage.md").read_text()
    assert "targets.md#" not in outside and 'docs/targets.md, "Mends to the PT2E quantizers"' in outside


@pytest.mark.slow
def test_one_model_through_the_worker_resumes_by_cell(tmp_path):
    """mobilenetv3_small_050 at 32x32 in its own process: onnx and the Core ML drop-in first, then a second pass
    adds litert and keeps the cells it already has."""
    pytest.importorskip("timm")
    rows = run_coverage(["mobilenetv3_small_050"], tmp_path, size=32, targets=["onnx", "coreml-dropin"])
    assert {t: c["status"] for t, c in rows[0]["targets"].items()} == {"onnx": "ok", "coreml-dropin": "ok"}
    assert rows[0]["targets"]["onnx"]["parity"]["cosine"] > 0.999
    rows = run_coverage(["mobilenetv3_small_050"], tmp_path, size=32, targets=["onnx", "litert"])
    assert {t: c["status"] for t, c in rows[0]["targets"].items()} == {"litert": "ok", "onnx": "ok",
                                                                       "coreml-dropin": "ok"}
    assert [p["targets"] for p in rows[0]["passes"]] == [["onnx", "coreml-dropin"], ["litert"]]
