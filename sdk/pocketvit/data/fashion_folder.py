"""A small labeled image folder made from Fashion-MNIST, as a user with few labels and many unlabeled images has:

    pocketvit data fashion-mnist-small DIR --per-class 50

    DIR/labeled/<class>/*.png     50 training images per class (a seeded choice)
    DIR/unlabeled/*.png           the rest of the training split, without labels
    DIR/test/<class>/*.png        the test split (10,000 images), for data.test_root

recipes/fashion-mnist-50.yaml reads it (data.root, data.unlabeled, data.test_root).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pocketvit.data.fashion_mnist import DEFAULT_ROOT, LABELS, load_split
from pocketvit.progress import progress_bar


def class_folder(label: str) -> str:
    """A class name as a folder name ('T-shirt/top' -> 'T-shirt-top')."""
    return label.replace("/", "-")


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(image).save(tmp, format="PNG")
    os.replace(tmp, path)


def write_fashion_folder(out: str | Path, per_class: int = 50, unlabeled: int | None = None,
                         test_per_class: int | None = None, root: str | Path = DEFAULT_ROOT,
                         seed: int = 0) -> dict[str, int]:
    """Write the folders (see the module doc); returns how many files each part holds. `unlabeled`: at most this
    many unlabeled images (default: the whole rest of the training split); `test_per_class`: at most this many
    test images per class (default: all). Files already written are kept, so a rerun is quick."""
    out = Path(out)
    x, y = load_split(root, "train")
    xt, yt = load_split(root, "test")
    rng = np.random.default_rng(seed)
    chosen = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in range(len(LABELS))])
    rest = np.setdiff1d(np.arange(len(y)), chosen)
    if unlabeled is not None:
        rest = np.sort(rng.permutation(rest)[:unlabeled])
    test = np.arange(len(yt))
    if test_per_class is not None:
        test = np.sort(np.concatenate([np.flatnonzero(yt == c)[:test_per_class] for c in range(len(LABELS))]))
    jobs = [(out / "labeled" / class_folder(LABELS[y[i]]) / f"train-{i:05d}.png", x[i]) for i in np.sort(chosen)]
    jobs += [(out / "unlabeled" / f"train-{i:05d}.png", x[i]) for i in rest]
    jobs += [(out / "test" / class_folder(LABELS[yt[i]]) / f"test-{i:05d}.png", xt[i]) for i in test]
    for folder in {p.parent for p, _ in jobs}:
        folder.mkdir(parents=True, exist_ok=True)
    with progress_bar("write PNG files", len(jobs)) as advance:
        for path, image in jobs:
            if not path.exists():
                _write_png(path, image)
            advance(1)
    return {"labeled": len(chosen), "unlabeled": len(rest), "test": len(test)}
