"""In-memory image datasets (uint8, NCHW) with train/val/test splits and replayable augmentation."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterator

import numpy as np
import torch

from pocketvit.data.augment import AugmentConfig, augment_batch, sample_seeds


@dataclass
class ImageSet:
    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64
    teacher_top1: torch.Tensor | None = None  # a pretrained teacher's top-1 per image (distill/pretrained.py)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> ImageSet:
        t = torch.from_numpy(np.asarray(idx))
        return ImageSet(self.images[t], self.labels[t])


@dataclass
class Splits:
    name: str
    train: ImageSet
    val: ImageSet
    test: ImageSet
    labels: list[str]
    mean: list[float]
    std: list[float]
    color_order: str  # GRAY | RGB
    fingerprint: str | None = None  # content hash of the images, for data read from user folders
    # data.unlabeled: images without labels appended to `train` (label -1) for the teacher cache and the student
    unlabeled: int = 0
    labeled_fingerprint: str | None = None  # the fingerprint without the unlabeled images (teacher, baseline)

    @property
    def labeled(self) -> bool:
        """False for label-free data (image folders without class folders): every label is -1. Labeled data may
        carry extra unlabeled training images (data.unlabeled); `labeled_train` is the rest."""
        return not len(self.train) or bool((self.train.labels >= 0).any())

    @property
    def labeled_train(self) -> ImageSet:
        """The training images that have labels (what a teacher or the labels-only baseline trains on)."""
        if not self.unlabeled:
            return self.train
        cached = self.__dict__.get("_labeled_train")
        if cached is None:
            cached = self.train.subset((self.train.labels >= 0).nonzero().flatten().numpy())
            self.__dict__["_labeled_train"] = cached
        return cached

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW -> normalized float32, the preprocessing the bundle manifest describes."""
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (x.float() / 255.0 - mean) / std


def split_train_val(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[val_size:]), np.sort(perm[:val_size])


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def augmented_batches(
    data: ImageSet, aug: AugmentConfig, seed: int, epoch: int, batch_size: int, shuffle: bool = True
) -> Iterator[tuple[np.ndarray, np.ndarray, torch.Tensor]]:
    """Yield (indices, seeds, augmented uint8 images) for one epoch; identical for the same (seed, epoch)."""
    order = epoch_order(len(data), seed, epoch) if shuffle else np.arange(len(data))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        seeds = sample_seeds(seed, epoch, idx)
        yield idx, seeds, augment_batch(data.images[torch.from_numpy(idx)], seeds, aug)


def plain_batches(data: ImageSet, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(data), batch_size):
        yield data.images[start : start + batch_size], data.labels[start : start + batch_size]
