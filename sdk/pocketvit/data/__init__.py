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


def count_images(cfg: Any, seed: int) -> dict[str, int]:
    """Training (labeled), unlabeled and val sample counts of a `data` section without decoding an image (for
    `pocketvit validate`'s training plan)."""
    if cfg.dataset == "image-folder":
        from pocketvit.data import image_folder
        from pocketvit.data.builtin import resolve_root

        _, targets, classes = image_folder.scan(resolve_root(cfg.root), cfg.labels)
        if cfg.holdout == "views":
            train, val = len(targets), len(targets)
        else:
            test_fraction = 0.0 if cfg.test_root is not None else cfg.test_fraction
            tr, va, _ = image_folder.split_files(targets, cfg.val_fraction, test_fraction, seed)
            train, val = len(tr), len(va)
        unlabeled = len(image_folder.unlabeled_files(cfg, seed)) if classes else 0
        held = cfg.held_out_views or cfg.views
        if not classes:  # label-free: every training sample is unlabeled, and none is labeled
            return {"train": 0, "unlabeled": train * cfg.views, "val": val * held}
        return {"train": train * cfg.views, "unlabeled": unlabeled, "val": val * held}
    total = 60000 if not cfg.train_limit else min(60000, cfg.train_limit + cfg.val_size)
    val = min(cfg.val_size, total // 2)
    return {"train": total - val, "unlabeled": 0, "val": val}


def input_spec(splits: Splits) -> dict[str, Any]:
    """The manifest's `input` block: everything an app needs to turn a camera frame into model input."""
    c, h, w = splits.shape
    return {
        "height": h, "width": w, "channels": c, "layout": "NCHW", "dtype": "float32",
        "color_order": splits.color_order, "resize": min(h, w), "crop": [h, w],
        "scale": 1.0 / 255.0, "mean": list(splits.mean), "std": list(splits.std),
    }
