"""Training length follows the data's size (min_steps, steps), `pocketvit validate` says it, and a build warns
when a stage ran too few steps or the teacher is weak; the stage hashes cover the epochs that run, not the policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from pocketvit.pipeline.plan import FEW_STEPS, describe_plan, distill_plan, teacher_plan, training_warnings
from pocketvit.recipe import load_recipe

from tests.conftest import TINY, run_cli


def _digits_like(root: Path, per_class: int = 130, classes: int = 10) -> Path:
    """A folder of ~1,300 small images in 10 class folders (the size of the issue's digit scans)."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"d{c}").mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / f"d{c}" / f"{i}.png")
    return root


def _recipe(tmp: Path, **teacher_train) -> Path:
    r = {"name": "digits", "data": {"dataset": "image-folder", "root": str(_digits_like(tmp / "digits"))},
         "teacher": {"arch": "pocketvit-resnet", "train": {"epochs": 8, "batch_size": 128} | teacher_train}}
    path = tmp / "r.yaml"
    path.write_text(yaml.safe_dump(r))
    return path


def test_a_small_folder_gets_enough_teacher_steps_by_default(tmp_path):
    recipe = load_recipe(_recipe(tmp_path))
    # 1,300 files: 940 train after test 20% / val 10% per class → 8 steps an epoch; 8 epochs would be 64 steps
    p = teacher_plan(recipe, 940, True)
    assert p.steps_per_epoch == 8 and p.epochs == 63 and p.steps == 504
    lines = describe_plan(recipe)
    assert lines[0] == "data: 940 labeled training images, 100 val" and "teacher: 504 optimizer steps" in lines[1]


def test_steps_and_min_steps(tmp_path):
    recipe = load_recipe(_recipe(tmp_path, steps=100))
    assert teacher_plan(recipe, 940, True).epochs == 13  # ceil(100 / 8)
    short = load_recipe(_recipe(tmp_path / "b", min_steps=0))
    assert teacher_plan(short, 940, True).steps == 64
    assert any("(few steps" in line for line in describe_plan(short))


def test_validate_prints_the_steps_of_each_stage(tmp_path):
    r = run_cli("validate", str(_recipe(tmp_path, min_steps=0)))
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stderr.split())
    assert "teacher: 64 optimizer steps (8 epoch(s) x 8 steps of 128 over 940 images) (few steps" in text
    assert "distill: 504 optimizer steps" in text  # distill.min_steps keeps its default of 500


def test_warnings_for_few_steps_and_a_weak_teacher():
    teacher = {"val_top1": 0.55, "train": {"steps": 66, "epochs": 6, "planned_epochs": 6, "steps_per_epoch": 11}}
    student = {"train": {"steps": 40, "epochs": 4, "planned_epochs": 50, "steps_per_epoch": 10}}  # stopped early
    out = training_warnings(teacher, student, None)
    assert len(out) == 2
    assert out[0].startswith("teacher trained for only 66 optimizer steps") and "teacher.train.min_steps" in out[0]
    assert "val top-1 is 0.550" in out[1]
    assert training_warnings({"val_top1": 0.9}, {"train": {"planned_epochs": 3, "steps_per_epoch": FEW_STEPS}},
                             None) == []


def test_stage_keys_cover_the_epochs_that_run_not_the_policy(fmnist_root):
    """tiny.yaml says min_steps: 0 and keeps its stage folders (tests/fixtures/stage_names.json); the same run asked
    for by steps has the same key, and the floor changes the key only when it changes the epochs."""
    from pocketvit.data import load_dataset
    from pocketvit.pipeline.classify import distill_config

    recipe = load_recipe(TINY)
    splits = load_dataset(recipe.data, recipe.seed)
    base = distill_config(recipe, splits)
    assert "min_steps" not in base and base["epochs"] == 1
    assert distill_config(load_recipe(TINY, ["distill.steps=5"]), splits) == base  # 5 steps = 1 epoch of 5
    floor = distill_config(load_recipe(TINY, ["distill.min_steps=20"]), splits)
    assert floor == base | {"epochs": 4}
    assert distill_plan(load_recipe(TINY, ["distill.min_steps=20"]), len(splits.train)).steps == 20


@pytest.mark.parametrize("key", ["teacher.train.min_steps", "distill.min_steps"])
def test_min_steps_cannot_be_negative(key):
    from pocketvit.errors import RecipeError

    with pytest.raises(RecipeError, match=key.replace(".", r"\.")):
        load_recipe(TINY, [f"{key}=-1"])
