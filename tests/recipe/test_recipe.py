from pathlib import Path

import pytest
from pocketvit.errors import RecipeError
from pocketvit.recipe import load_recipe

from tests.conftest import ROOT, run_cli

RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_shipped_recipe_validates(path):
    load_recipe(path)


def test_validate_cli_on_all_recipes():
    r = run_cli("validate", *map(str, RECIPES))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("ok") == len(RECIPES)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


BAD = {
    "unknown key": ("name: x\ndistill: {epochz: 3}\n", "distill.epochz: unknown key"),
    "wrong type": ("name: x\ndistill: {epochs: many}\n", "distill.epochs: Input should be a valid integer"),
    "negative epochs": ("name: x\ndistill: {epochs: -1}\n", "distill.epochs: Input should be greater than 0"),
    "missing data path": ("name: x\ndata: {root: /nonexistent/fmnist}\n", "data.root: folder /nonexistent/fmnist"),
    "unknown target": ("name: x\nexport: {targets: [tensorrt]}\n", "export.targets.0"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_recipe_gives_one_clear_message_and_exit_2(tmp_path, case):
    text, expected = BAD[case]
    r = run_cli("build", str(_write(tmp_path, text)), "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    assert expected in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out" / "stages").exists()  # nothing ran


def test_all_problems_reported_at_once(tmp_path):
    p = _write(tmp_path, "name: x\ndistill: {epochs: -1, lr: fast}\nteacher_cache: {topk: 0}\nfoo: 1\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    msg = str(e.value)
    for key in ("distill.epochs", "distill.lr", "teacher_cache.topk", "foo: unknown key"):
        assert key in msg
    assert "4 problem(s)" in msg


def test_set_overrides_are_typed_and_checked(tmp_path):
    p = ROOT / "tests" / "fixtures" / "tiny.yaml"
    r = load_recipe(p, ["distill.epochs=4", "export.targets=[executorch, onnx]"])
    assert r.distill.epochs == 4 and r.export.targets == ["executorch", "onnx"]
    with pytest.raises(RecipeError, match="distill.epochs"):
        load_recipe(p, ["distill.epochs=0"])
    with pytest.raises(RecipeError, match="expected key.path=value"):
        load_recipe(p, ["distill.epochs"])
