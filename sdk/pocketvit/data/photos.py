"""Real photos that ship inside scikit-image, scikit-learn and matplotlib, written out as an image folder.

    pocketvit data photos DIR          # 20 JPEG files, no download
    data: {dataset: image-folder, root: "pocketvit:photos"}   # the same folder, made on first use

They make a small label-free set for distilling an ImageNet teacher (recipes/photos-lite0.yaml):
a cat, a coffee cup, an astronaut, a rocket, a motorcycle, coins, a clock, the moon, ...
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pocketvit.errors import MissingExtraError
from pocketvit.progress import log

BUILTIN = "pocketvit:photos"
SKIMAGE = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
           "camera", "coins", "moon", "clock", "brick", "grass", "gravel", "cell", "stereo_motorcycle")
SKLEARN = ("china.jpg", "flower.jpg")
MATPLOTLIB = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        out = getattr(data, name)()
        return out[0] if isinstance(out, tuple) else out  # stereo_motorcycle: (left, right, disparity)

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)

    return load


def _matplotlib(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from matplotlib import cbook
        from PIL import Image

        with Image.open(cbook.get_sample_data(name, asfileobj=False)) as im:
            return np.asarray(im.convert("RGB"))

    return load


def sources() -> dict[str, Callable[[], np.ndarray]]:
    """name -> loader of the photo as an (H, W[, C]) uint8 array."""
    out = {f"skimage-{n}": _skimage(n) for n in SKIMAGE}
    out |= {f"sklearn-{Path(n).stem}": _sklearn(n) for n in SKLEARN}
    out |= {f"matplotlib-{Path(n).stem.lower()}": _matplotlib(n) for n in MATPLOTLIB}
    return out


def write_photos(folder: str | Path) -> list[Path]:
    """Write every available photo as RGB JPEG (quality 95) into `folder`; returns the files written.

    A library that is not installed is skipped with a warning; none at all is an error."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written, missing = [], set()
    for name, load in sources().items():
        try:
            arr = load()
        except ImportError as e:
            missing.add(e.name or name.split("-")[0])
            continue
        arr = np.asarray(arr)
        if arr.dtype != np.uint8:
            arr = (arr.astype(np.float64) * (255 if arr.max() <= 1 else 1)).clip(0, 255).astype(np.uint8)
        im = Image.fromarray(arr).convert("RGB")
        path = folder / f"{name}.jpg"
        tmp = path.with_name(f".{path.name}.tmp")
        im.save(tmp, format="JPEG", quality=95)
        os.replace(tmp, path)
        written.append(path)
    if missing:
        log(f"[yellow]warning: {', '.join(sorted(missing))} not installed: its photos were skipped[/yellow]")
    if not written:
        raise MissingExtraError("scikit-image", "photos", "it ships the sample photos")
    return written
