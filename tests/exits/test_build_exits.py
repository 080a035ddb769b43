"""The exits stages through the real build (tiny recipe, ONNX), and the recipe section's checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

RECIPE = Path(__file__).parent / "tiny-exits.yaml"


def test_exits_section_is_validated(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(RECIPE.read_text().replace("after_blocks: [1, 2]", "after_blocks: []\n  heads: [sideways]"))
    r = run_cli("validate", str(bad))
    assert r.returncode == 2
    assert "exits.after_blocks" in r.stderr + r.stdout and "exits.heads" in r.stderr + r.stdout


@pytest.mark.slow
def test_tiny_build_with_exits(tmp_path, fmnist_root):
    from pocketvit.pipeline.classify import run_build
    from pocketvit.recipe import load_recipe
    from pocketvit.runtime import load

    out = tmp_path / "build"
    report = run_build(load_recipe(RECIPE), RECIPE, out)
    e = report["exits"]["onnx"]
    for key in ("thresholds", "test_top1", "full_test_top1", "mean_latency_ms", "full_latency_ms", "exit_histogram"):
        assert e[key] is not None
    assert sum(e["exit_histogram"].values()) == report["dataset"]["test"]
    assert e["decision_agreement"] == 1.0
    assert e["verify"]["status"] == "pass" and report["verify"]["passed"]  # the exit program was judged too
    assert json.loads((out / "report.json").read_text())["exits"]["onnx"]["thresholds"] == e["thresholds"]
    assert "Early exits" in (out / "report.md").read_text() and (out / "plots" / "exits_histogram.png").is_file()
    with load(out / "bundle", target="onnx") as p:
        assert [x["name"] for x in p.exits] == ["exit1", "exit2", "final"]
    # a rerun reuses every stage
    again = run_build(load_recipe(RECIPE), RECIPE, out)
    assert all(s["cached"] for s in again["stages"].values())
    # the stage folders are those an earlier release wrote (tests/fixtures/stage_names.json): its runs are reused
    golden = json.loads((Path(__file__).parents[1] / "fixtures" / "stage_names.json").read_text())["tiny-exits"]
    assert sorted(p.name for p in (out / "stages").iterdir()) == golden
