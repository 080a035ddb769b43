"""Image folders: one subfolder per class (labeled), or a flat folder of images (label-free distillation).

Splits are made from the files (the same photo never lands in two splits), images are decoded with
PIL, resized (shorter side) and centre-cropped to `data.image_size`, and held as uint8 RGB tensors like
Fashion-MNIST's. With `data.views: R` each training file becomes R samples (R seeds, so R different
augmented crops per epoch) and each held-out file R fixed augmented crops, materialised once from seeds
no training epoch uses. `data.holdout: views` keeps every file in training and holds out fresh crops of
them instead (new views of seen photos rather than unseen photos).

`data.unlabeled: DIR` appends images without labels (label -1) to the training split: the teacher labels them
softly in the cache and the student learns from them; teachers and the labels-only baseline train on the
labeled rows only (`Splits.labeled_train`). `data.test_root: DIR` is a separate labeled folder used as the
test split.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pocketvit.data.augment import AugmentConfig, augment_batch, sample_seeds
from pocketvit.data.datasets import ImageSet, Splits
from pocketvit.errors import DataError
from pocketvit.progress import log

SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
UNLABELED = -1
HELD_OUT_EPOCH = {"val": 0x7FFF0001, "test": 0x7FFF0002}  # seed keys no training epoch reaches


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith("."))


def scan(root: str | Path, labels: str = "auto") -> tuple[list[Path], list[int], list[str]]:
    """Files, their class indices (UNLABELED when label-free) and the class names (subfolder names)."""
    from pocketvit.data.builtin import resolve_root

    root = resolve_root(str(root))
    if not root.is_dir():
        raise DataError(f"data.root {root} is not a folder; point it at a folder of images (one subfolder per "
                        "class, or a flat folder for label-free distillation): --set data.root=/path/to/images")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                     and _images_in(p, recursive=True))
    if labels == "folders" or (labels == "auto" and classes):
        if not classes:
            raise DataError(f"{root}: data.labels is 'folders' but there is no subfolder with images; put each "
                            "class's images in its own subfolder, or use data.labels: none")
        files, targets = [], []
        for i, name in enumerate(classes):
            found = _images_in(root / name, recursive=True)
            files += found
            targets += [i] * len(found)
        loose = _images_in(root, recursive=False)
        if loose:
            log(f"[yellow]warning: {len(loose)} image(s) directly in {root} have no class folder; ignored[/yellow]")
        return files, targets, classes
    files = _images_in(root, recursive=True)
    if not files:
        raise DataError(f"{root} holds no images ({', '.join(SUFFIXES)}); add some, or make a folder of real "
                        "photos with `pocketvit data photos DIR`")
    return files, [UNLABELED] * len(files), []


def loose_images(root: str | Path) -> list[Path]:
    """Images directly in a labeled folder's root, outside the class folders (`data.unlabeled: loose`)."""
    from pocketvit.data.builtin import resolve_root

    return _images_in(resolve_root(str(root)), recursive=False)


def unlabeled_files(cfg: Any, seed: int) -> list[Path]:
    """The files `data.unlabeled` names (a folder searched recursively, or `loose`), at most
    `data.unlabeled_limit` of them (a seeded random choice, in file order)."""
    if cfg.unlabeled is None:
        return []
    if cfg.unlabeled == "loose":
        files = loose_images(cfg.root)
    else:
        from pocketvit.data.builtin import resolve_root

        folder = resolve_root(cfg.unlabeled)
        if not folder.is_dir():
            raise DataError(f"data.unlabeled: {folder} is not a folder; point it at a folder of images without "
                            "labels (or use `loose` for the images directly in data.root)")
        files = _images_in(folder, recursive=True)
    if not files:
        raise DataError(f"data.unlabeled: no images in {cfg.unlabeled}; drop data.unlabeled or add images")
    if cfg.unlabeled_limit and len(files) > cfg.unlabeled_limit:
        keep = np.sort(np.random.default_rng([seed, 11]).choice(len(files), cfg.unlabeled_limit, replace=False))
        files = [files[i] for i in keep]
    return files


def _decode_all(files: list[Path], targets: list[int], size: int, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    from pocketvit.progress import progress_bar

    arrays, kept = [], []
    with progress_bar(f"decode {what}", len(files)) as advance:
        for path, t in zip(files, targets):
            a = decode(path, size)
            if a is not None:
                arrays.append(a)
                kept.append(t)
            advance(1)
    if not arrays:
        raise DataError(f"{what}: none of its {len(files)} image file(s) could be read; check the files")
    return torch.from_numpy(np.stack(arrays)), torch.tensor(kept, dtype=torch.int64)


def decode(path: Path, size: int) -> np.ndarray | None:
    """(3, size, size) uint8 RGB: shorter side resized to `size`, centre crop; None when PIL cannot read it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            im = im.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
            return np.ascontiguousarray(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        log(f"[yellow]warning: skipping {path}: not a readable image ({type(e).__name__}: {e})[/yellow]")
        return None


def split_files(targets: list[int], val_fraction: float, test_fraction: float, seed: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train/val/test file indices, per class when labeled (every class keeps at least one training file)."""
    t = np.asarray(targets)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for cls in np.unique(t):
        idx = rng.permutation(np.flatnonzero(t == cls))
        n_test = _count(test_fraction, len(idx))
        n_val = _count(val_fraction, len(idx) - n_test)
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test : n_test + n_val])
        parts[0].append(idx[n_test + n_val :])
    return tuple(np.sort(np.concatenate(p)).astype(np.int64) for p in parts)  # type: ignore[return-value]


def _count(fraction: float, n: int) -> int:
    """round(fraction * n), at least 1 when fraction > 0, leaving at least one file for training."""
    if fraction <= 0 or n <= 1:
        return 0
    return int(min(n - 1, max(1, round(fraction * n))))


def held_out_augment(aug: AugmentConfig) -> AugmentConfig:
    """Held-out views: the training crops and flips, without photometric ops or erasing."""
    return dataclasses.replace(aug, randaug_ops=0, erase_prob=0.0)


def materialise_views(images: torch.Tensor, labels: torch.Tensor, views: int, aug: AugmentConfig, seed: int,
                      split: str) -> ImageSet:
    """`views` fixed augmented crops of each image (all of it untouched when the augmentation has no crop)."""
    if views <= 1 and not aug.photo:
        return ImageSet(images, labels)
    idx = np.repeat(np.arange(len(images)), views)
    seeds = sample_seeds(seed, HELD_OUT_EPOCH[split], np.arange(len(idx)))
    out = torch.cat([augment_batch(images[torch.from_numpy(idx[s : s + 256])], seeds[s : s + 256], aug)
                     for s in range(0, len(idx), 256)])
    return ImageSet(out, labels[torch.from_numpy(idx)])


def load(cfg: Any, seed: int) -> Splits:
    """Splits from a recipe's `data` section with dataset: image-folder."""
    from pocketvit.data.builtin import resolve_root

    root = resolve_root(cfg.root)
    files, targets, classes = scan(root, cfg.labels)
    images, labels = _decode_all(files, targets, cfg.image_size, str(root))
    kept = labels.tolist()
    aug = AugmentConfig(**cfg.augment.model_dump())
    test_set = None
    if cfg.test_root is not None:
        test_set = _test_folder(cfg, classes)
        if cfg.holdout == "views":
            raise DataError("data.test_root gives the test split, data.holdout: views holds out crops of the "
                            "training files; use one of them")
    if cfg.holdout == "views":
        train_idx = val_idx = test_idx = np.arange(len(kept))
    else:
        test_fraction = 0.0 if test_set is not None else cfg.test_fraction
        train_idx, val_idx, test_idx = split_files(kept, cfg.val_fraction, test_fraction, seed)
        if len(test_idx) == 0 and test_set is None:
            raise DataError(f"{root}: {len(kept)} readable image(s) leave none for the test split; add images, "
                            "raise data.test_fraction, or hold out fresh crops instead with data.holdout: views")
    rep = np.repeat(train_idx, cfg.views)
    train = ImageSet(images[torch.from_numpy(rep)], labels[torch.from_numpy(rep)])
    held, n_held = held_out_augment(aug), cfg.held_out_views or cfg.views
    val = materialise_views(images[torch.from_numpy(val_idx)], labels[torch.from_numpy(val_idx)], n_held, held,
                            seed, "val")
    if test_set is None:
        test = materialise_views(images[torch.from_numpy(test_idx)], labels[torch.from_numpy(test_idx)], n_held,
                                 held, seed, "test")
    else:
        test = materialise_views(*test_set, n_held, held, seed, "test")
    digest = hashlib.sha256()
    for part in (train, val, test):
        digest.update(part.images.numpy().tobytes())
        digest.update(part.labels.numpy().tobytes())
    labeled_fingerprint = digest.hexdigest()[:16]
    n_unlabeled = 0
    extra = unlabeled_files(cfg, seed)
    if extra:
        if not classes:
            raise DataError("data.unlabeled adds images without labels to labeled data; this folder has no class "
                            "folders, so every image is unlabeled already: drop data.unlabeled")
        u_images, u_labels = _decode_all(extra, [UNLABELED] * len(extra), cfg.image_size, "unlabeled images")
        train = ImageSet(torch.cat([train.images, u_images]), torch.cat([train.labels, u_labels]))
        n_unlabeled = len(u_labels)
        digest.update(u_images.numpy().tobytes())
    elif classes and loose_images(root) and cfg.unlabeled is None:
        log(f"  data.unlabeled: loose would add the {len(loose_images(root))} image(s) directly in {root} as "
            "unlabeled images for distillation")
    test_from = f"test {len(test_idx)}" if test_set is None else f"test {len(test)} from {cfg.test_root}"
    log(f"data: {len(kept)} image(s) from {root} ({len(classes) or 'no'} class folder(s)), files "
        f"train {len(train_idx)} / val {len(val_idx)} / {test_from}, {cfg.views} training view(s) and "
        f"{n_held} held-out crop(s) each" + (f"; {n_unlabeled} unlabeled image(s) for distillation"
                                             if n_unlabeled else ""))
    fingerprint = digest.hexdigest()[:16]
    return Splits(name=f"image-folder:{root.name}", train=train, val=val, test=test, labels=classes,
                  mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), color_order="RGB",
                  fingerprint=fingerprint, unlabeled=n_unlabeled,
                  labeled_fingerprint=labeled_fingerprint if n_unlabeled else None)


def _test_folder(cfg: Any, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """data.test_root: a labeled folder with the same class folders as data.root (at most data.test_limit
    images, a seeded choice that keeps every class)."""
    from pocketvit.data.builtin import resolve_root

    root = resolve_root(cfg.test_root)
    if not root.is_dir():
        raise DataError(f"data.test_root: {root} is not a folder; point it at a labeled folder with the same class "
                        "folders as data.root")
    files, targets, test_classes = scan(root, "folders")
    if test_classes != classes:
        raise DataError(f"data.test_root: {root} has class folders {test_classes}, data.root has {classes}; they "
                        "must be the same")
    if cfg.test_limit and len(files) > cfg.test_limit:
        keep = np.sort(np.random.default_rng([0, 13]).permutation(len(files))[: cfg.test_limit])
        files, targets = [files[i] for i in keep], [targets[i] for i in keep]
    return _decode_all(files, targets, cfg.image_size, str(root))
