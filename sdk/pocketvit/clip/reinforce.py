"""MobileCLIP-style reinforced dataset: everything the student needs, so training runs no teacher at all.

Per training image and per augmentation: the augmentation seed (data/augment.py rebuilds the exact image
from it) and the image embedding of every teacher of the ensemble on that augmented image; per image: the
indices of several captions (real description, synthetic, templated) into a table of caption text
embeddings computed once by the text teacher. Files (numpy, no pickles):

    index.npy        (N,)        int64    position of each image in the training split
    seeds.npy        (A, N)      int32    augmentation seed per augmentation per image
    image_emb.npy    (A, N, T, D) float16 image embedding per augmentation, per teacher of the ensemble
    captions.npy     (N, K)      int32    caption indices per image
    caption_emb.npy  (C, D)      float16  text embedding of every caption
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pocketvit.data.augment import AugmentConfig, augment_batch, sample_seeds
from pocketvit.data.datasets import Splits, epoch_order
from pocketvit.progress import progress_bar
from pocketvit.runtime.io import atomic_path

FILES = ("index.npy", "seeds.npy", "image_emb.npy", "captions.npy", "caption_emb.npy")


def save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


@torch.no_grad()
def write_reinforced(teachers: Sequence[torch.nn.Module], splits: Splits, index: np.ndarray, aug: AugmentConfig,
                     seed: int, augmentations: int, captions: np.ndarray, caption_emb: np.ndarray, out: Path,
                     batch_size: int = 500) -> None:
    """Run the teacher ensemble once over `augmentations` augmented copies of the images at `index`."""
    out.mkdir(parents=True, exist_ok=True)
    device = next(teachers[0].parameters()).device
    n = len(index)
    dim = caption_emb.shape[1]
    seeds = np.stack([sample_seeds(seed, a, index) for a in range(augmentations)])
    emb = np.zeros((augmentations, n, len(teachers), dim), dtype=np.float16)
    with progress_bar("reinforced dataset (teacher ensemble)", augmentations * n) as advance:
        for a in range(augmentations):
            for start in range(0, n, batch_size):
                sl = slice(start, start + batch_size)
                images = augment_batch(splits.train.images[torch.from_numpy(index[sl])], seeds[a, sl], aug)
                x = splits.normalize(images).to(device)
                for k, t in enumerate(teachers):
                    emb[a, sl, k] = t.eval()(x).float().cpu().numpy().astype(np.float16)
                advance(len(x))
    for name, arr in (("index.npy", index.astype(np.int64)), ("seeds.npy", seeds), ("image_emb.npy", emb),
                      ("captions.npy", captions.astype(np.int32)), ("caption_emb.npy", caption_emb.astype(np.float16))):
        save_npy(out / name, arr)


@dataclass
class ReinforcedData:
    folder: Path

    def __post_init__(self) -> None:
        from pocketvit.errors import PocketVitError

        missing = [f for f in FILES if not (self.folder / f).is_file()]
        if missing:
            raise PocketVitError(f"reinforced dataset {self.folder}: missing {missing}; rebuild it with --fresh")
        def load(name: str) -> np.ndarray:
            return np.load(self.folder / name, mmap_mode="r", allow_pickle=False)

        self.index, self.seeds, self.image_emb = load("index.npy"), load("seeds.npy"), load("image_emb.npy")
        self.captions, self.caption_emb = load("captions.npy"), np.asarray(load("caption_emb.npy"), np.float32)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def augmentations(self) -> int:
        return int(self.seeds.shape[0])

    def size_bytes(self) -> int:
        return sum((self.folder / f).stat().st_size for f in FILES)

    def batches(self, splits: Splits, aug: AugmentConfig, epoch: int, batch_size: int,
                seed: int) -> Iterator[tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
        """Epoch e replays augmentation e mod A: (normalized images, (caption text emb, teacher image emb
        (B, T, D), class labels)); one of each image's captions is drawn per epoch."""
        a = epoch % self.augmentations
        order = epoch_order(len(self), seed, epoch)
        pick = np.random.default_rng([seed, epoch, 1]).integers(self.captions.shape[1], size=len(self))
        for start in range(0, len(order), batch_size):
            idx = np.sort(order[start : start + batch_size])
            where = torch.from_numpy(self.index[idx])
            images = augment_batch(splits.train.images[where], self.seeds[a, idx], aug)
            txt = torch.from_numpy(self.caption_emb[self.captions[idx, pick[idx]]])
            t_img = torch.from_numpy(self.image_emb[a, idx].astype(np.float32))
            yield splits.normalize(images), (txt, t_img, splits.train.labels[where])
