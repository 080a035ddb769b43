"""The few steps of a training loop that differ between one plain process and a Fabric run (DDP / FSDP).

`LocalEngine` is exactly the plain PyTorch loop (no Lightning import, no extra work per step);
`FabricEngine` hands model and optimizer to Fabric, backward/clipping to its precision plugin, and
writes the resume checkpoint from rank 0. Both write the same checkpoint format (model, optimizer,
epoch), so a run can resume on a different number of processes.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pocketvit.runtime.io import atomic_path
from pocketvit.scale import Dist

OptimizerFactory = Callable[[nn.Module], torch.optim.Optimizer]


class LocalEngine:
    """One process, one device: today's loop, step for step."""

    def __init__(self, device: torch.device):
        self.device = device

    def setup(self, model: nn.Module, make_opt: OptimizerFactory) -> tuple[nn.Module, torch.optim.Optimizer]:
        model.to(self.device)
        return model, make_opt(model)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def clip(self, model: nn.Module, opt: torch.optim.Optimizer, max_norm: float) -> None:
        nn.utils.clip_grad_norm_(model.parameters(), max_norm)

    def share(self, n_local: int) -> torch.Tensor | None:
        return None

    def load(self, path: Path, model: nn.Module, opt: torch.optim.Optimizer) -> tuple[int, dict[str, Any]]:
        """(finished epochs, the loop's own state saved beside them: early stopping's best so far)."""
        state = torch.load(path, map_location=self.device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        return int(state["epoch"]), dict(state.get("extra") or {})

    def save(self, path: Path, model: nn.Module, opt: torch.optim.Optimizer, epoch: int,
             extra: dict[str, Any] | None = None) -> None:
        with atomic_path(path) as tmp:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                        "extra": extra or {}}, tmp)

    def finish(self, model: nn.Module, path: Path) -> None:
        pass


class FabricEngine:
    """DDP or FSDP through Lightning Fabric; rank 0 writes the checkpoint, the others wait."""

    def __init__(self, dist: Dist):
        self.dist = dist
        self.fabric = dist.fabric
        self.device = dist.device

    def setup(self, model: nn.Module, make_opt: OptimizerFactory) -> tuple[nn.Module, torch.optim.Optimizer]:
        self._swaps: list = []
        if self.dist.world_size > 1 and self.dist.strategy != "fsdp":
            from pocketvit.scale.batchnorm import use_global_batchnorm

            self._swaps = use_global_batchnorm(model)  # statistics of the global batch, as in one process
        if self.dist.strategy == "fsdp":  # FSDP shards the module it wraps: train a copy, keep the caller's whole
            model = copy.deepcopy(model)
        wrapped = self.fabric.setup_module(model)  # FSDP needs the optimizer built on the wrapped parameters
        return wrapped, self.fabric.setup_optimizers(make_opt(wrapped))

    def backward(self, loss: torch.Tensor) -> None:
        self.fabric.backward(loss)

    def clip(self, model: nn.Module, opt: torch.optim.Optimizer, max_norm: float) -> None:
        self.fabric.clip_gradients(model, opt, max_norm=max_norm)

    def share(self, n_local: int) -> torch.Tensor | None:
        """Loss weight that makes DDP's gradient average the mean over the *global* batch, even when the
        ranks' slices differ in size (the last batch of an epoch)."""
        if self.dist.world_size == 1:
            return None
        n = torch.tensor(float(n_local), device=self.device)
        total = self.fabric.all_reduce(n.clone(), reduce_op="sum")
        return n * self.dist.world_size / total

    def load(self, path: Path, model: nn.Module, opt: torch.optim.Optimizer) -> tuple[int, dict[str, Any]]:
        rest = self.fabric.load(path, {"model": model, "optimizer": opt}, weights_only=True)
        return int(rest["epoch"]), dict(rest.get("extra") or {})

    def save(self, path: Path, model: nn.Module, opt: torch.optim.Optimizer, epoch: int,
             extra: dict[str, Any] | None = None) -> None:
        tmp = path.with_name(f".{path.name}.fabric.tmp")  # same name on every rank; Fabric writes on rank 0
        self.fabric.save(tmp, {"model": model, "optimizer": opt, "epoch": epoch, "extra": extra or {}})
        if self.dist.is_zero:
            os.replace(tmp, path)
        self.dist.barrier()

    def finish(self, model: nn.Module, path: Path) -> None:
        """The caller's own BatchNorm modules back; FSDP leaves each rank a shard: give the caller's module
        the full weights from the last checkpoint."""
        from pocketvit.scale.batchnorm import restore_batchnorm

        restore_batchnorm(self._swaps)
        if self.dist.strategy == "fsdp":
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])


Engine = LocalEngine | FabricEngine


def engine_for(dist: Dist, device: torch.device | None) -> Engine:
    if dist.fabric is None:
        return LocalEngine(device or dist.device)
    return FabricEngine(dist)


def take_rows(batch: Any, rank: int, world: int) -> Any:
    """Rows rank, rank + world, ... of a batch (tensor, tuple/list of them, or a dataclass of tensors)."""
    if isinstance(batch, torch.Tensor):
        return batch[rank::world]
    if isinstance(batch, (tuple, list)):
        return type(batch)(take_rows(b, rank, world) for b in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **{f.name: take_rows(getattr(batch, f.name), rank, world)
                                              for f in dataclasses.fields(batch)})
    raise TypeError(f"cannot split a batch of type {type(batch).__name__} across ranks")


def rank_batches(batches: Callable[..., Iterable], epoch: int, dist: Dist) -> Iterator:
    """This rank's part of each global batch of `batches(epoch)`.

    A producer that takes a `shard=(rank, world)` keyword builds only its own rows (no wasted augmentation);
    any other producer's global batches are cut here, with the same rows rank::world.
    """
    if dist.world_size == 1:
        yield from batches(epoch)
        return
    if _takes_shard(batches):
        yield from batches(epoch, shard=(dist.rank, dist.world_size))
        return
    for batch in batches(epoch):
        yield take_rows(batch, dist.rank, dist.world_size)


def _takes_shard(fn: Callable) -> bool:
    try:
        return "shard" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
