"""The labels-only baseline trained in a side process beside distillation: same stage, same weights."""

from __future__ import annotations

import json

import torch
from pocketvit.data import load_dataset
from pocketvit.data.augment import AugmentConfig
from pocketvit.pipeline.runner import StageResult, StageRunner
from pocketvit.pipeline.stages.baseline import SideStage, baseline_config, baseline_stage_fn, split_threads
from pocketvit.recipe import load_recipe
from safetensors.torch import load_file

from tests.conftest import TINY


def test_side_process_baseline_equals_the_inline_stage(tiny_build, tmp_path):
    """The tiny build trains its baseline in the side process (2+ cores); the same stage run here with the side
    process's thread count gives bit-identical weights and the same test top-1."""
    side = next(tiny_build.glob("stages/baseline-*"))
    assert (tiny_build / "logs" / "baseline.log").is_file()  # empty: the test suite runs quiet
    recipe = load_recipe(TINY)
    splits = load_dataset(recipe.data, recipe.seed)
    aug = AugmentConfig(**recipe.data.augment.model_dump())
    data = StageResult("data", "unused", tmp_path, {}, 0.0, True)
    threads = torch.get_num_threads()
    torch.set_num_threads(split_threads(threads)[1])
    try:
        from pocketvit.pipeline.classify import distill_config

        inline = StageRunner(tmp_path, seed=recipe.seed).run(
            "baseline", baseline_config(recipe, distill_config(recipe, splits), splits), [data],
            baseline_stage_fn(recipe, splits, aug))
    finally:
        torch.set_num_threads(threads)
    a, b = load_file(str(side / "student.safetensors")), load_file(str(inline.path / "student.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((side / "done.json").read_text())["meta"]["test_top1"] == inline.meta["test_top1"]
    report = json.loads((tiny_build / "report.json").read_text())
    assert report["stages"]["baseline"]["cached"] is False  # computed in this build, by the side process


def test_a_failing_side_process_is_reported_and_leaves_no_finished_stage(tmp_path):
    (tmp_path / "no-idx-files").mkdir()  # the folder exists, the data does not: the side process fails
    recipe = load_recipe(TINY, [f"data.root={tmp_path / 'no-idx-files'}"])
    runner = StageRunner(tmp_path / "run", seed=0)
    from pocketvit.pipeline.classify import distill_config

    splits = load_dataset(load_recipe(TINY).data, 0)  # the config of the tiny data; the side process finds none
    side = SideStage.start(recipe, runner, StageResult("data", "k", tmp_path, {}, 0.0, True),
                           baseline_config(recipe, distill_config(recipe, splits), splits), threads=1)
    assert side.finish() is False
    assert "error:" in side.log_path.read_text()  # the child's message is in its log
    assert not list(runner.stages_dir.glob("baseline-*/done.json"))
