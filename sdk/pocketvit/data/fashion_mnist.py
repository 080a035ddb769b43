"""Fashion-MNIST from its idx files (gzip or raw), as uint8 arrays."""

from __future__ import annotations

import gzip
import struct
import zlib
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


def _find(path: Path) -> Path:
    for candidate in (path.with_name(path.name + ".gz"), path):
        if candidate.exists():
            return candidate
    raise DataError(f"Fashion-MNIST file {path.name}(.gz) not found in {path.parent}: {MISSING_HINT}")


def read_idx(path: Path) -> np.ndarray:
    """Read one idx file (magic, dims, big-endian uint8 payload), gzipped or raw. A file cut short, or not an idx
    file at all, is a DataError naming it and the fix."""
    file = _find(path)
    fix = ("download it again, or reinstall Debian's package (sudo apt-get install --reinstall dataset-fashion-mnist), "
           "or point data.root at a complete copy")
    try:
        with gzip.open(file, "rb") if file.suffix == ".gz" else open(file, "rb") as f:
            head = f.read(4)
            if len(head) != 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08 or not 1 <= head[3] <= 4:
                raise DataError(f"{file}: not an unsigned-byte idx file (bad magic {head!r}); {fix}")
            ndim = head[3]
            raw = f.read(4 * ndim)
            if len(raw) != 4 * ndim:
                raise DataError(f"{file}: the header is cut short; {fix}")
            dims = struct.unpack(">" + "I" * ndim, raw)
            expected = int(np.prod(dims))
            data = f.read(expected + 1)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:  # a .gz cut short or damaged
        raise DataError(f"{file}: the gzip data is truncated or damaged ({e}); {fix}") from None
    except OSError as e:
        raise DataError(f"{file}: cannot be read ({e.strerror or e}); {fix}") from None
    if len(data) != expected:
        raise DataError(f"{file}: expected {expected} bytes of data, found {len(data)}; the file is "
                        f"{'truncated' if len(data) < expected else 'longer than its header says'}; {fix}")
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
