"""TinyViT teacher cache: the teacher runs once; the student replays its sparse soft labels.

Per (sample, epoch) the cache keeps the augmentation seed, the top-k class indices (int16) and
their probabilities (fp16). Layout: one folder per epoch, one shard per rank, each shard a set of
.npy files (rows sorted by sample index) plus a `done` marker written last.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pocketvit.data.augment import AugmentConfig, augment_batch, sample_seeds
from pocketvit.data.datasets import Splits
from pocketvit.distill.trainer import inference_autocast
from pocketvit.errors import PocketVitError
from pocketvit.progress import progress_bar
from pocketvit.runtime.io import atomic_path
from pocketvit.scale import Dist, current

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


def _read_done(shard: Path) -> dict[str, int] | None:
    """A finished shard's record (rows, rank, world_size); None while unfinished. Old caches stored the row count."""
    done = shard / "done"
    if not done.exists():
        return None
    text = done.read_text().strip()
    return json.loads(text) if text.startswith("{") else {"rows": int(text), "world_size": 1}


def _place_teacher(teacher: nn.Module, dist: Dist) -> nn.Module:
    """The teacher on this rank's device; under FSDP sharded across the ranks by Fabric (large teachers)."""
    if dist.fabric is not None and dist.strategy == "fsdp":
        return dist.fabric.setup_module(teacher)
    teacher.to(dist.device)
    if dist.device.type == "cpu":
        teacher.to(memory_format=torch.channels_last)
    return teacher


def _epochs_to_record(root: Path, epochs: int, rank: int, world_size: int, dist: Dist | None) -> list[int]:
    """Epochs whose shard is unfinished or from a run of another size; in a multi-process run the union over
    the ranks, so that every rank runs the same teacher forwards (FSDP gathers weights in each)."""
    need = [(_read_done(_shard_dir(root, e, rank)) or {}).get("world_size") != world_size for e in range(epochs)]
    if dist is not None and dist.fabric is not None and dist.world_size > 1:
        mask = dist.fabric.all_reduce(torch.tensor(need, dtype=torch.int32, device=dist.device), reduce_op="sum")
        need = [bool(v) for v in mask.tolist()]
    return [e for e in range(epochs) if need[e]]


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
    rank: int | None = None,
    world_size: int | None = None,
    precision: str = "fp32",
) -> None:
    """Record `epochs` augmented epochs of the training split; finished epochs are skipped (resume).

    Each rank records samples rank, rank + world_size, ... into epoch_XXX/rank_YYY (`batch_size` images
    per teacher forward on each rank). rank/world_size default to this process's place in the run
    (`pocketvit.scale.current()`); pass them to write one shard by hand. Returns once every rank is done.
    `precision` is the teacher's compute precision (fp32 or bf16, see trainer.resolve_precision)."""
    dist = current()
    rank = dist.rank if rank is None else rank
    world_size = dist.world_size if world_size is None else world_size
    data = splits.train
    own = rank == dist.rank  # False when a caller writes another rank's shard by hand
    model = _place_teacher(teacher, dist) if own else teacher
    device = dist.device if own else next(teacher.parameters()).device
    model.eval()
    todo = _epochs_to_record(root, epochs, rank, world_size, dist if own else None)
    mine = np.arange(rank, len(data), world_size)
    # the same number of forwards on every rank (FSDP gathers the weights in each one)
    chunks = np.array_split(mine, max(1, math.ceil(math.ceil(len(data) / world_size) / batch_size)))
    with progress_bar("teacher cache", len(todo) * len(mine)) as advance:
        for epoch in todo:
            rows = {f: [] for f in FIELDS}
            for idx in chunks:
                seeds = sample_seeds(seed, epoch, idx)
                x = splits.normalize(augment_batch(data.images[torch.from_numpy(idx)], seeds, aug)).to(device)
                if device.type == "cpu":
                    x = x.contiguous(memory_format=torch.channels_last)
                with inference_autocast(precision, device):
                    logits = model(x)
                if topk > logits.shape[1]:
                    raise PocketVitError(f"teacher_cache.topk is {topk} but the teacher has only {logits.shape[1]} "
                                         f"classes; set teacher_cache.topk to at most {logits.shape[1]}")
                p, i = torch.softmax(logits.float(), 1).cpu().topk(topk, dim=1)
                rows["index"].append(idx.astype(np.int64))
                rows["seed"].append(seeds)
                rows["topk_idx"].append(i.numpy().astype(np.int16))
                rows["topk_prob"].append(p.numpy().astype(np.float16))
                advance(len(idx), info=f"epoch {epoch + 1}/{epochs}")
            _write_shard(root, epoch, rank, world_size, rows)
    if own:
        dist.barrier()


def _write_shard(root: Path, epoch: int, rank: int, world_size: int, rows: dict[str, list[np.ndarray]]) -> None:
    shard = _shard_dir(root, epoch, rank)
    shard.mkdir(parents=True, exist_ok=True)
    if rank == 0:  # a rerun on fewer ranks: shards of ranks that no longer exist would be read as duplicates
        for stale in shard.parent.glob("rank_*"):
            if int(stale.name.split("_")[1]) >= world_size:
                shutil.rmtree(stale, ignore_errors=True)
    for f in FIELDS:
        with atomic_path(shard / f"{f}.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.concatenate(rows[f]))
    with atomic_path(shard / "done") as tmp:
        tmp.write_text(json.dumps({"rows": int(sum(len(r) for r in rows["index"])), "rank": rank,
                                   "world_size": world_size}) + "\n")


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
        """All rows of one cached epoch, from every rank's shard, indexed by sample index."""
        e = epoch % len(self.epochs)
        if e not in self._tables:
            shards = self._shards(self.epochs[e])
            parts = {f: [np.load(shard / f"{f}.npy", allow_pickle=False) for shard in shards] for f in FIELDS}
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

    @staticmethod
    def _shards(epoch_dir: Path) -> list[Path]:
        """The epoch's shards, rank order; each finished, and exactly the ranks 0..W-1 of the run that wrote them."""
        shards = sorted(epoch_dir.glob("rank_*"))
        worlds = set()
        for shard in shards:
            done = _read_done(shard)
            if done is None:
                raise PocketVitError(f"teacher cache shard {shard} is incomplete; rerun the build to finish it")
            worlds.add(done.get("world_size", len(shards)))
        expected = [f"rank_{r:03d}" for r in range(worlds.pop())] if len(worlds) == 1 else None
        if expected != [s.name for s in shards]:
            raise PocketVitError(
                f"teacher cache {epoch_dir} has shards {[s.name for s in shards]} written by runs of "
                f"{sorted(worlds) or '?'} ranks; a shard is missing or stale. Rerun the build to finish it "
                "(or rebuild with --fresh)")
        return shards

    def shard_bytes(self) -> dict[str, int]:
        """Bytes on disk per rank, over all epochs."""
        out: dict[str, int] = {}
        for p in self.root.glob("epoch_*/rank_*/*.npy"):
            out[p.parent.name] = out.get(p.parent.name, 0) + p.stat().st_size
        return dict(sorted(out.items()))

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*.npy"))

    def batches(
        self, splits: Splits, aug: AugmentConfig, epoch: int, batch_size: int, shuffle_seed: int,
        shard: tuple[int, int] | None = None,
    ):
        """Yield (normalized augmented images, SparseLogits) for one student epoch, rebuilt from seeds.

        `batch_size` is the global batch; with `shard=(rank, world)` only rows rank::world of each are built."""
        t = self.table(epoch)
        order = np.random.default_rng([shuffle_seed, epoch, 7]).permutation(self.num_train)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            if shard is not None:
                idx = idx[shard[0] :: shard[1]]
            seeds = t["seed"][idx]
            images = augment_batch(splits.train.images[torch.from_numpy(idx)], seeds, aug)
            target = SparseLogits(
                torch.from_numpy(t["topk_idx"][idx].astype(np.int64)),
                torch.from_numpy(t["topk_prob"][idx].astype(np.float32)),
            )
            yield splits.normalize(images), target
