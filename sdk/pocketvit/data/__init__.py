"""Datasets: splits held in memory as uint8 tensors, plus the preprocessing contract they imply."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pocketvit.data.datasets import ImageSet, Splits, split_train_val


def load_dataset(cfg: Any, seed: int) -> Splits:
    """Build train/val/test splits from a recipe's `data` section."""
    from pocketvit.data import fashion_mnist

    if cfg.dataset == "image-folder":
        from pocketvit.data import image_folder

        return image_folder.load(cfg, seed)

    x_train, y_train = fashion_mnist.load_split(cfg.root, "train")
    x_test, y_test = fashion_mnist.load_split(cfg.root, "test")
    if cfg.train_limit:
        x_train, y_train = x_train[: cfg.train_limit + cfg.val_size], y_train[: cfg.train_limit + cfg.val_size]
    if cfg.test_limit:
        x_test, y_test = x_test[: cfg.test_limit], y_test[: cfg.test_limit]
    full = ImageSet(torch.from_numpy(np.ascontiguousarray(x_train))[:, None], torch.from_numpy(y_train))
    train_idx, val_idx = split_train_val(len(full), min(cfg.val_size, len(full) // 2), seed)
    test = ImageSet(torch.from_numpy(np.ascontiguousarray(x_test))[:, None], torch.from_numpy(y_test))
    return Splits(
        name=cfg.dataset,
        train=full.subset(train_idx),
        val=full.subset(val_idx),
        test=test,
        labels=list(fashion_mnist.LABELS),
        mean=[0.2860],
        std=[0.3530],
        color_order="GRAY",
    )


def input_spec(splits: Splits) -> dict[str, Any]:
    """The manifest's `input` block: everything an app needs to turn a camera frame into model input."""
    c, h, w = splits.shape
    return {
        "height": h, "width": w, "channels": c, "layout": "NCHW", "dtype": "float32",
        "color_order": splits.color_order, "resize": min(h, w), "crop": [h, w],
        "scale": 1.0 / 255.0, "mean": list(splits.mean), "std": list(splits.std),
    }
