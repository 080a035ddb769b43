"""Training on labels: the teacher trained from scratch and the labels-only baseline student."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pocketvit.data.augment import AugmentConfig, augment_batch, sample_seeds
from pocketvit.data.datasets import ImageSet, Splits, epoch_order, plain_batches
from pocketvit.distill.trainer import TrainSettings, predict_logits, train


def train_on_labels(
    model: nn.Module,
    splits: Splits,
    aug: AugmentConfig,
    seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    label_smoothing: float,
    work_dir: Path,
    description: str,
    fast: bool = True,
    precision: str = "fp32",
    patience: int | None = None,
    summary: dict | None = None,
) -> nn.Module:
    """Train on the labeled training images with cross-entropy. `patience`: early stopping on val top-1 (the best
    epoch kept); `summary` receives what ran (trainer.train)."""
    from pocketvit.distill.trainer import Validation

    data = splits.labeled_train
    steps = -(-len(data) // batch_size)

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)

    settings = TrainSettings(epochs=epochs, lr=lr, weight_decay=weight_decay, steps_per_epoch=steps, fast=fast,
                             precision=precision)
    validation = None
    if patience is not None and len(splits.val):
        validation = Validation(lambda m: evaluate(m, splits, splits.val, f"{description} val"), patience=patience)
    return train(model, label_batches(splits, aug, seed, batch_size), loss_fn, settings, work_dir, description,
                 validation=validation, summary=summary)


def label_batches(splits: Splits, aug: AugmentConfig, seed: int, batch_size: int) -> Callable[..., Iterator]:
    """`batches(epoch, shard=None)`: (normalized augmented images, labels) of the training split's labeled images
    (all of it unless data.unlabeled added images), the same global batches as datasets.augmented_batches; with
    shard=(rank, world) only rows rank::world of each are augmented, so that ranks do not repeat each other's work."""
    data = splits.labeled_train

    def batches(epoch: int, shard: tuple[int, int] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = epoch_order(len(data), seed, epoch)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            if shard is not None:
                idx = idx[shard[0] :: shard[1]]
            images = augment_batch(data.images[torch.from_numpy(idx)], sample_seeds(seed, epoch, idx), aug)
            yield splits.normalize(images), data.labels[torch.from_numpy(idx)]

    return batches


def evaluate(model: nn.Module, splits: Splits, data: ImageSet, description: str, batch_size: int = 500) -> float:
    """Eager top-1 accuracy on an un-augmented split."""
    logits = predict_logits(
        model, (splits.normalize(x) for x, _ in plain_batches(data, batch_size)), len(data), description
    )
    return float((logits.argmax(1) == data.labels).float().mean())
