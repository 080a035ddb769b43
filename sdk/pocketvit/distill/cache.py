"""TinyViT teacher cache: the teacher runs once; the student replays its sparse soft labels.

Per (sample, epoch) the cache keeps the augmentation seed, the top-k class indices (int16) and
their probabilities (fp16). Layout: one folder per epoch, one shard per rank, each shard a set of
.npy files (rows sorted by sample index) plus a `done` marker written last.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pocketvit.data.augment import AugmentConfig, augment_batch
from pocketvit.data.datasets import Splits, augmented_batches
from pocketvit.distill.trainer import inference_autocast
from pocketvit.errors import PocketVitError
from pocketvit.io import atomic_path
from pocketvit.progress import progress_bar

FIELDS = ("index", "seed", "topk_idx", "topk_prob")


@dataclass
class SparseLogits:
    """A batch of sparse teacher targets."""

    topk_idx: torch.Tensor  # (B, k) int64
    topk_prob: torch.Tensor  # (B, k) float32

    def dense(self, num_classes: int) -> torch.Tensor:
        """Full target distribution: leftover mass spread evenly over the classes outside the top-k."""
        k = self.topk_idx.shape[1]
        rest = (1.0 - self.topk_prob.sum(1, keepdim=True)).clamp(min=0) / max(1, num_classes - k)
        target = rest.expand(-1, num_classes).clone()
        return target.scatter_(1, self.topk_idx, self.topk_prob)


def sparse_soft_cross_entropy(logits: torch.Tensor, target: SparseLogits) -> torch.Tensor:
    dense = target.dense(logits.shape[1]).to(logits.dtype)
    return -(dense * torch.log_softmax(logits, dim=1)).sum(1).mean()


def _shard_dir(root: Path, epoch: int, rank: int) -> Path:
    return root / f"epoch_{epoch:03d}" / f"rank_{rank:03d}"


@torch.no_grad()
def write_cache(
    teacher: nn.Module,
    splits: Splits,
    aug: AugmentConfig,
    seed: int,
    epochs: int,
    topk: int,
    batch_size: int,
    root: Path,
    rank: int = 0,
    world_size: int = 1,
    precision: str = "fp32",
) -> None:
    """Record `epochs` augmented epochs of the training split; finished epochs are skipped (resume).

    `precision` is the teacher's compute precision (fp32 or bf16, see trainer.resolve_precision)."""
    data = splits.train
    device = next(teacher.parameters()).device
    teacher.eval()
    if device.type == "cpu":
        teacher.to(memory_format=torch.channels_last)
    todo = [e for e in range(epochs) if not (_shard_dir(root, e, rank) / "done").exists()]
    mine = np.arange(rank, len(data), world_size)
    with progress_bar("teacher cache", len(todo) * len(mine)) as advance:
        for epoch in todo:
            rows = {f: [] for f in FIELDS}
            for idx, seeds, images in augmented_batches(data, aug, seed, epoch, batch_size, shuffle=False):
                keep = idx % world_size == rank
                idx, seeds, images = idx[keep], seeds[keep], images[torch.from_numpy(keep)]
                x = splits.normalize(images).to(device)
                if device.type == "cpu":
                    x = x.contiguous(memory_format=torch.channels_last)
                with inference_autocast(precision, device):
                    logits = teacher(x)
                probs = torch.softmax(logits.float(), 1).cpu()
                p, i = probs.topk(topk, dim=1)
                rows["index"].append(idx.astype(np.int64))
                rows["seed"].append(seeds)
                rows["topk_idx"].append(i.numpy().astype(np.int16))
                rows["topk_prob"].append(p.numpy().astype(np.float16))
                advance(len(idx), info=f"epoch {epoch + 1}/{epochs}")
            shard = _shard_dir(root, epoch, rank)
            shard.mkdir(parents=True, exist_ok=True)
            for f in FIELDS:
                with atomic_path(shard / f"{f}.npy") as tmp:
                    with open(tmp, "wb") as fh:
                        np.save(fh, np.concatenate(rows[f]))
            with atomic_path(shard / "done") as tmp:
                tmp.write_text(f"{len(mine)}\n")


class TeacherCache:
    """Read a cache written by any number of ranks; rebuild augmented images from the stored seeds."""

    def __init__(self, root: Path, num_train: int):
        self.root = Path(root)
        self.epochs = sorted(p for p in self.root.glob("epoch_*") if p.is_dir())
        if not self.epochs:
            raise PocketVitError(f"teacher cache {root} is empty; rerun the build to regenerate it")
        self._tables: dict[int, dict[str, np.ndarray]] = {}
        self.num_train = num_train

    def __len__(self) -> int:
        return len(self.epochs)

    def table(self, epoch: int) -> dict[str, np.ndarray]:
        """All rows of one cached epoch, indexed by sample index."""
        e = epoch % len(self.epochs)
        if e not in self._tables:
            parts = {f: [] for f in FIELDS}
            for shard in sorted(self.epochs[e].glob("rank_*")):
                if not (shard / "done").exists():
                    raise PocketVitError(f"teacher cache shard {shard} is incomplete; rerun the build to finish it")
                for f in FIELDS:
                    parts[f].append(np.load(shard / f"{f}.npy", allow_pickle=False))
            t = {f: np.concatenate(parts[f]) for f in FIELDS}
            order = np.argsort(t["index"], kind="stable")
            t = {f: v[order] for f, v in t.items()}
            if len(t["index"]) != self.num_train or not np.array_equal(t["index"], np.arange(self.num_train)):
                raise PocketVitError(
                    f"teacher cache {self.epochs[e]} covers {len(t['index'])} samples, expected {self.num_train}; "
                    "rebuild it with --fresh"
                )
            self._tables[e] = t
        return self._tables[e]

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*.npy"))

    def batches(self, splits: Splits, aug: AugmentConfig, epoch: int, batch_size: int, shuffle_seed: int):
        """Yield (normalized augmented images, SparseLogits) for one student epoch, rebuilt from seeds."""
        t = self.table(epoch)
        order = np.random.default_rng([shuffle_seed, epoch, 7]).permutation(self.num_train)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            seeds = t["seed"][idx]
            images = augment_batch(splits.train.images[torch.from_numpy(idx)], seeds, aug)
            target = SparseLogits(
                torch.from_numpy(t["topk_idx"][idx].astype(np.int64)),
                torch.from_numpy(t["topk_prob"][idx].astype(np.float32)),
            )
            yield splits.normalize(images), target
