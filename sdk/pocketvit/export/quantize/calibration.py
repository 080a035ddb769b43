"""Calibration and sensitivity images: drawn from the training split only, never from the test split.

The test split is what every reported accuracy is measured on; a quantizer that saw it would be tuned
on the exam. `calibration_images` takes the Splits and draws from `splits.train`; `held_out_images`
from `splits.val` (held out of training, used to check the accuracy budget); `training_split` hands QAT
(pipeline/stages/qat.py) the training split. All three refuse an ImageSet that is the test split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pocketvit.errors import DataError

PLAN_FILE = "calibration_indices.npy"  # the quantize plan stage's calibration indices into the training split

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from pocketvit.data.datasets import ImageSet, Splits


def _draw(images: ImageSet, n: int, seed: int) -> np.ndarray:
    n = min(int(n), len(images))
    return np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))


def _check_not_test(splits: Splits, source: ImageSet, what: str) -> None:
    if source is splits.test or source.images.data_ptr() == splits.test.images.data_ptr():
        raise DataError(f"{what}: refusing to use the test split; quantization calibrates on training images "
                        "only (the test split is where accuracy is measured)")


def calibration_images(splits: Splits, n: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """(normalized float images, their indices into splits.train): `n` training images, seeded."""
    _check_not_test(splits, splits.train, "calibration")
    idx = _draw(splits.train, n, seed)
    return splits.normalize(splits.train.images[idx]), idx


def held_out_images(splits: Splits, n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalized images, labels): `n` validation images (held out of training) for the accuracy budget."""
    _check_not_test(splits, splits.val, "sensitivity")
    idx = _draw(splits.val, n, seed)
    return splits.normalize(splits.val.images[idx]), splits.val.labels[idx]


def training_split(splits: Splits, what: str = "QAT") -> ImageSet:
    """splits.train, to train on (quantization-aware training); refused when it is the test split."""
    _check_not_test(splits, splits.train, what)
    return splits.train


def plan_calibration(plan: Any, splits: Any):
    """The plan's calibration images (normalized float), read back by index from the training split."""
    idx = np.load(plan.path / PLAN_FILE)
    return splits.normalize(splits.train.images[idx])
