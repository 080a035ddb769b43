"""The stage runner: a stage's random stream does not depend on what ran before it."""

import torch
from pocketvit.pipeline.runner import StageRunner


def _draw(path):
    return {"x": torch.rand(3).tolist()}


def test_stage_random_stream_is_independent_of_cached_predecessors(tmp_path):
    first = StageRunner(tmp_path / "a", seed=5)
    first.run("one", {}, [], _draw)
    computed_after = first.run("two", {}, [], _draw).meta["x"]

    again = StageRunner(tmp_path / "a", seed=5)  # "one" and "two" cached now
    assert again.run("one", {}, [], _draw).cached
    fresh_dir = StageRunner(tmp_path / "b", seed=5)  # "two" alone, nothing before it
    alone = fresh_dir.run("two", {}, [], _draw).meta["x"]
    assert alone == computed_after
    other_seed = StageRunner(tmp_path / "c", seed=6).run("two", {}, [], _draw).meta["x"]
    assert other_seed != alone
