"""Stage keys are the build's cache: a `runs/` folder written by an earlier release must be reused, not recomputed.
tests/fixtures/stage_names.json holds the stage folders (name-hash) the release before the pipeline/ layout wrote
for the tiny recipes; the same recipe must lead to the same folders now."""

from __future__ import annotations

import json
import shutil

from tests.conftest import ROOT, TINY

GOLDEN = json.loads((ROOT / "tests" / "fixtures" / "stage_names.json").read_text())


def test_tiny_build_writes_the_stage_folders_of_earlier_releases(tiny_build):
    assert sorted(p.name for p in (tiny_build / "stages").iterdir()) == GOLDEN["tiny"]


def test_a_finished_build_is_reused_stage_by_stage(tiny_build, tmp_path):
    from pocketvit.pipeline.classify import run_build
    from pocketvit.recipe import load_recipe

    out = tmp_path / "copy"
    shutil.copytree(tiny_build, out)
    report = run_build(load_recipe(TINY), TINY, out)
    assert report["stages"] and all(s["cached"] for s in report["stages"].values())
