"""Training on labels: the teacher trained from scratch and the labels-only baseline student."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pocketvit.data.augment import AugmentConfig
from pocketvit.data.datasets import ImageSet, Splits, augmented_batches, plain_batches
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
) -> nn.Module:
    data = splits.train
    steps = -(-len(data) // batch_size)

    def batches(epoch: int):
        for idx, _, images in augmented_batches(data, aug, seed, epoch, batch_size):
            yield splits.normalize(images), data.labels[torch.from_numpy(idx)]

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)

    settings = TrainSettings(epochs=epochs, lr=lr, weight_decay=weight_decay, steps_per_epoch=steps)
    return train(model, batches, loss_fn, settings, work_dir, description)


def evaluate(model: nn.Module, splits: Splits, data: ImageSet, description: str, batch_size: int = 500) -> float:
    """Eager top-1 accuracy on an un-augmented split."""
    logits = predict_logits(
        model, (splits.normalize(x) for x, _ in plain_batches(data, batch_size)), len(data), description
    )
    return float((logits.argmax(1) == data.labels).float().mean())
