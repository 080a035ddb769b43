"""Fashion-MNIST from its idx files (gzip or raw), as uint8 arrays."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from pocketvit.errors import DataError

LABELS = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MISSING_HINT = (
    "install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or download the four "
    "idx files and point the recipe at their folder with `--set data.root=/path/to/fashion-mnist`"
)


def _open(path: Path):
    for candidate in (path.with_name(path.name + ".gz"), path):
        if candidate.exists():
            return gzip.open(candidate, "rb") if candidate.suffix == ".gz" else open(candidate, "rb")
    raise DataError(f"Fashion-MNIST file {path.name}(.gz) not found in {path.parent}: {MISSING_HINT}")


def read_idx(path: Path) -> np.ndarray:
    """Read one idx file (magic, dims, big-endian uint8 payload)."""
    with _open(path) as f:
        head = f.read(4)
        if len(head) != 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
            raise DataError(f"{path}: not an unsigned-byte idx file (bad magic {head!r}); is the download complete?")
        ndim = head[3]
        dims = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        data = f.read()
    expected = int(np.prod(dims))
    if len(data) != expected:
        raise DataError(f"{path}: expected {expected} bytes of data, found {len(data)}; the file is truncated")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims).copy()


def load_split(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of the train or test split."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data.root {root} is not a folder: {MISSING_HINT}")
    images_name, labels_name = _FILES[split]
    images = read_idx(root / images_name)
    labels = read_idx(root / labels_name).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(f"{root}: {len(images)} {split} images but {len(labels)} labels")
    return images, labels
