"""Augmentation replayable from one integer seed per (sample, epoch).

The teacher cache stores only the seed; the student's data loader rebuilds the identical augmented
image from it (TinyViT). Parameters come from a counter-based hash (splitmix64), so they are
vectorised, independent of batch composition and identical on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def sample_seeds(base_seed: int, epoch: int, indices: np.ndarray) -> np.ndarray:
    """One int32 seed per sample for this epoch."""
    key = np.uint64(base_seed & 0xFFFFFFFF) << np.uint64(32) | np.uint64(epoch & 0xFFFFFFFF)
    h = _splitmix64(_splitmix64(np.full(len(indices), key, dtype=np.uint64)) ^ indices.astype(np.uint64))
    return (h & np.uint64(0x7FFFFFFF)).astype(np.int32)


def _uniforms(seeds: np.ndarray, count: int) -> np.ndarray:
    """count uniform floats in [0, 1) per seed, shape (N, count)."""
    s = seeds.astype(np.uint64)[:, None] * np.uint64(1000003) + np.arange(count, dtype=np.uint64)[None, :]
    return (_splitmix64(s) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass(frozen=True)
class AugmentConfig:
    shift: int = 2  # random translation in pixels (zero padding), both axes
    hflip: bool = True
    erase_prob: float = 0.0  # random erasing of one rectangle
    erase_max: float = 0.3  # max side of the erased rectangle, as a fraction of the image side
    # photos (photo_augment.py): random resized crop replaces the shift when crop_scale is set
    crop_scale: tuple[float, float] | None = None  # area fraction range of the crop
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio range (log-uniform)
    randaug_ops: int = 0  # RandAugment-style ops per view, each drawn from the seed
    randaug_magnitude: float = 9.0  # 0..10; each op's magnitude is uniform in [0, this]

    @property
    def photo(self) -> bool:
        return self.crop_scale is not None or self.randaug_ops > 0


def augment_batch(images: torch.Tensor, seeds: np.ndarray, cfg: AugmentConfig) -> torch.Tensor:
    """Augment a uint8 batch (N, C, H, W) deterministically from per-sample seeds."""
    from pocketvit.data import photo_augment as pa

    n, _, h, w = images.shape
    u = torch.from_numpy(_uniforms(seeds, pa.COLUMNS if cfg.photo else 7))
    out = images
    if cfg.crop_scale is not None:
        pass  # the random resized crop below moves and flips the image instead
    elif cfg.shift > 0:
        p = cfg.shift
        padded = torch.nn.functional.pad(out, (p, p, p, p))
        dy = (u[:, 0] * (2 * p + 1)).long().clamp(max=2 * p)
        dx = (u[:, 1] * (2 * p + 1)).long().clamp(max=2 * p)
        rows = dy[:, None] + torch.arange(h)[None, :]
        cols = dx[:, None] + torch.arange(w)[None, :]
        if cfg.hflip:
            flip = u[:, 2] < 0.5
            cols = torch.where(flip[:, None], cols.flip(1), cols)
        b = torch.arange(n)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    elif cfg.hflip:
        flip = (u[:, 2] < 0.5)[:, None, None, None]
        out = torch.where(flip, out.flip(3), out)
    if cfg.photo:
        out = pa.photo_augment(out, u, cfg.crop_scale, cfg.crop_ratio, cfg.hflip, cfg.randaug_ops,
                               cfg.randaug_magnitude).to(torch.uint8)
    if cfg.erase_prob > 0:
        eh = (u[:, 3] * cfg.erase_max * h).long() + 1
        ew = (u[:, 4] * cfg.erase_max * w).long() + 1
        y0 = (u[:, 5] * (h - eh + 1)).long()
        x0 = (u[:, 6] * (w - ew + 1)).long()
        yy = torch.arange(h)[None, :, None]
        xx = torch.arange(w)[None, None, :]
        box = (yy >= y0[:, None, None]) & (yy < (y0 + eh)[:, None, None])
        box = box & (xx >= x0[:, None, None]) & (xx < (x0 + ew)[:, None, None])
        erase = torch.from_numpy(_uniforms(seeds + 1, 1)[:, 0] < cfg.erase_prob)
        box = box & erase[:, None, None]
        out = out.masked_fill(box[:, None], 0)
    return out.contiguous()
