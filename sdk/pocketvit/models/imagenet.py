"""ImageNet class names, human-readable ("espresso", "tabby, tabby cat"), from the label files timm ships.

    from pocketvit.models.imagenet import imagenet_labels, labels_for
    imagenet_labels()[967]          # 'espresso'
    labels_for(1000)                # the ImageNet-1k descriptions
    labels_for(10)                  # ['class_0', ..., 'class_9']
"""

from __future__ import annotations

from functools import lru_cache

from pocketvit.errors import MissingExtraError

SUBSETS = ("imagenet-1k", "imagenet-22k")


@lru_cache(maxsize=4)
def _descriptions(subset: str) -> tuple[str, ...]:
    try:
        from timm.data import ImageNetInfo
    except ImportError as exc:
        raise MissingExtraError("timm", "train", "it ships the ImageNet class names") from exc
    return tuple(ImageNetInfo(subset).label_descriptions())


def imagenet_labels(subset: str = "imagenet-1k") -> list[str]:
    """The class descriptions of an ImageNet subset, in the order of the model's outputs."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown ImageNet subset {subset!r}; known: {', '.join(SUBSETS)}")
    return list(_descriptions(subset))


def generic_labels(num_classes: int) -> list[str]:
    return [f"class_{i}" for i in range(num_classes)]


def labels_for(num_classes: int, subset: str | None = None) -> list[str]:
    """ImageNet names when the output size is an ImageNet subset's (1000, 21841), else class_0..class_N-1.

    `subset` names the subset to prefer (e.g. from timm's `infer_imagenet_subset`); it is used only when
    its size matches `num_classes`.
    """
    for s in ([subset] if subset in SUBSETS else []) + list(SUBSETS):
        names = _descriptions(s)
        if len(names) == num_classes:
            return list(names)
    return generic_labels(num_classes)
