"""The state one build shares between its stages: the recipe, the stage runner, the data and how to load a model.

The classification and the CLIP builds open it the same way (`BuildContext.open`); every stage factory takes it
instead of a long list of positional arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from pocketvit.data.augment import AugmentConfig
from pocketvit.data.datasets import Splits
from pocketvit.models.weights import build_from_meta, load_weights, weights_path
from pocketvit.pipeline.runner import StageResult, StageRunner
from pocketvit.recipe import Recipe
from pocketvit.recipe.schema import stable_dump
from pocketvit.runtime.io import hash_config

ModelFn = Callable[[], torch.nn.Module]


@dataclass
class BuildContext:
    recipe: Recipe
    recipe_path: Path
    out_dir: Path
    runner: StageRunner
    splits: Splits
    aug: AugmentConfig
    data: StageResult  # the data as a pseudo-stage: its key covers the data section, the seed and the split sizes
    # the labeled data alone (what a teacher and the labels-only baseline see): `data` unless data.unlabeled adds
    # images, so that adding or changing unlabeled images does not retrain the teacher
    labeled_data: StageResult | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.labeled_data is None:
            self.labeled_data = self.data

    @classmethod
    def open(cls, recipe: Recipe, recipe_path: Path, out_dir: Path, fresh: bool = False,
             fingerprint: bool = True) -> BuildContext:
        """Seed torch, open the stage folder and load the data. `fingerprint`: the data key also covers the
        files of an image folder (the classification build; the CLIP build's key never did, kept for its hashes)."""
        from pocketvit.data import load_dataset

        torch.manual_seed(recipe.seed)
        splits = load_dataset(recipe.data, recipe.seed)  # bad data fails before anything is written in out_dir
        runner = StageRunner(out_dir, fresh=fresh, seed=recipe.seed)
        aug = AugmentConfig(**recipe.data.augment.model_dump())
        key = {"data": stable_dump(recipe.data), "seed": recipe.seed, "n": [len(splits.train), len(splits.test)]}
        if fingerprint and splits.fingerprint:
            key |= {"files": splits.fingerprint}
        data = StageResult("data", hash_config(key), out_dir, {}, 0.0, True)
        labeled = data
        section = {k: v for k, v in stable_dump(recipe.data).items() if k not in ("unlabeled", "unlabeled_limit")}
        if section != key["data"]:  # data.unlabeled in the recipe: the labeled part's own key, with or without it
            lkey = {"data": section, "seed": recipe.seed, "n": [len(splits.labeled_train), len(splits.test)]}
            if fingerprint and splits.fingerprint:
                lkey |= {"files": splits.labeled_fingerprint or splits.fingerprint}
            labeled = StageResult("data", hash_config(lkey), out_dir, {}, 0.0, True)
        return cls(recipe, recipe_path, out_dir, runner, splits, aug, data, labeled)

    @cached_property
    def spec(self) -> dict[str, Any]:
        """The bundle's input contract (size, channels, colour order, resize, mean/std)."""
        from pocketvit.data import input_spec

        return input_spec(self.splits)

    @property
    def name(self) -> str:
        return self.recipe.name

    def run(self, name: str, config: Any, inputs: list[StageResult], fn: Callable[[Path], dict[str, Any]],
            computed_elsewhere: str | None = None) -> StageResult:
        return self.runner.run(name, config, inputs, fn, computed_elsewhere=computed_elsewhere)

    def model_fn(self, stage: StageResult, name: str = "student") -> ModelFn:
        """Loads the model a stage saved as `<name>.safetensors`, built from the stage's meta."""
        return lambda: load_weights(build_from_meta(stage.meta, self.splits), weights_path(stage, name), name)

    def partial(self, **extra: Any) -> dict[str, Any]:
        """The report of a build stopped early by --until."""
        return {"recipe": self.recipe.name, **extra, "stages": self.runner.summary()}
