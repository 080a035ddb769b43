import gzip

import numpy as np
import pytest
from pocketvit.data.fashion_mnist import LABELS, load_split, read_idx
from pocketvit.errors import DataError


def test_real_splits(fmnist_root):
    x, y = load_split(fmnist_root, "test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert set(np.unique(y)) == set(range(len(LABELS)))


def test_truncated_file_is_refused(tmp_path):
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 100)
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "t10k-images-idx3-ubyte")


def test_missing_root_names_the_fix(tmp_path):
    with pytest.raises(DataError, match="data.root"):
        load_split(tmp_path / "nope", "train")
