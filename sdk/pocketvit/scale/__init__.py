"""Training at scale: this process's place in a run (rank, world size, device) and the Lightning Fabric behind it.

`setup(ScaleConfig(...))` is called once per process (by `pocketvit build`); the trainer, the teacher cache
and the stage runner then ask `current()`. A single-process fp32 run never imports Lightning; several
devices or nodes, a `torchrun` launch, mixed precision or FSDP run through Fabric (DDP / FSDP on gloo or nccl).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from pocketvit.errors import MissingExtraError, RecipeError

PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")
STRATEGIES = ("auto", "ddp", "fsdp")


@dataclass(frozen=True)
class ScaleConfig:
    """Where training runs; mirrors the recipe's `scale:` section."""

    accelerator: str = "auto"  # auto | cpu | cuda | gpu | mps
    devices: int | str = 1  # processes per node (GPUs, or CPU processes); "auto" = every GPU
    num_nodes: int = 1
    strategy: str = "auto"  # auto (ddp when several processes) | ddp | fsdp
    precision: str = "auto"  # auto = bf16-mixed on a GPU that has bf16, else 32-true


@dataclass
class Dist:
    """This process's view of the run; `fabric` is None for a plain single-process run."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    fabric: Any = None
    strategy: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_zero(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.fabric is not None and self.world_size > 1:
            self.fabric.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's value of `obj` on every rank."""
        if self.fabric is None or self.world_size == 1:
            return obj
        return self.fabric.broadcast(obj, src=0)


_current: Dist | None = None


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def current() -> Dist:
    """The running process's Dist; a plain single-process view when `setup` was never called."""
    return _current if _current is not None else Dist(_default_device())


def reset() -> None:
    """Forget the current setup (tests; a process that is done with its distributed part)."""
    global _current
    _current = None


def _torchrun_topology() -> tuple[int, int] | None:
    """(processes per node, nodes) when this process was started by torchrun, else None."""
    if not (torch.distributed.is_available() and torch.distributed.is_torchelastic_launched()):
        return None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    return local, max(1, world // max(1, local))


def _uses_gpu(accelerator: str) -> bool:
    return accelerator in ("cuda", "gpu") or (accelerator == "auto" and torch.cuda.is_available())


def resolve_precision(cfg: ScaleConfig) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    if _uses_gpu(cfg.accelerator) and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def _check(cfg: ScaleConfig) -> None:
    problems = []
    if cfg.precision not in PRECISIONS:
        problems.append(f"scale.precision: {cfg.precision!r} is not one of {', '.join(PRECISIONS)}")
    if cfg.strategy not in STRATEGIES:
        problems.append(f"scale.strategy: {cfg.strategy!r} is not one of {', '.join(STRATEGIES)}")
    if cfg.strategy == "fsdp" and not _uses_gpu(cfg.accelerator):
        problems.append("scale.strategy: fsdp needs GPUs (none here, or accelerator=cpu); use ddp on the CPU")
    if cfg.accelerator in ("cuda", "gpu") and not torch.cuda.is_available():
        problems.append(f"scale.accelerator: {cfg.accelerator} asked for but no CUDA device is visible; use auto or cpu")
    if problems:
        raise RecipeError("\n".join(problems))


def setup(cfg: ScaleConfig) -> Dist:
    """Start (or join) the run described by `cfg` and make it `current()`.

    Under torchrun the launcher's topology wins (devices = --nproc-per-node, num_nodes = --nnodes). Otherwise
    Fabric's own launcher starts the other local processes: they re-run this same command and join here.
    """
    global _current
    _check(cfg)
    if _current is not None and _current.fabric is not None and _current.world_size > 1:
        return _current  # a process joins one distributed run; a second build in it reuses that run
    precision = resolve_precision(cfg)
    devices, num_nodes = cfg.devices, cfg.num_nodes
    launched = _torchrun_topology()
    if launched is not None:
        devices, num_nodes = launched
    processes = (torch.cuda.device_count() if devices == "auto" else int(devices)) * num_nodes
    if processes <= 1 and precision == "32-true" and cfg.strategy != "fsdp" and cfg.accelerator in ("auto", "cpu"):
        device = torch.device("cpu") if cfg.accelerator == "cpu" else _default_device()
        _current = Dist(device)
        return _current
    try:
        from lightning_fabric import Fabric
    except ImportError:
        raise MissingExtraError("lightning_fabric", "scale", "needed to run on several devices or nodes") from None
    strategy: Any = cfg.strategy
    if cfg.strategy == "fsdp":
        from lightning_fabric.strategies import FSDPStrategy

        strategy = FSDPStrategy(state_dict_type="full")  # one consolidated checkpoint file, written by rank 0
    fabric = Fabric(accelerator=cfg.accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
                    precision=precision)
    fabric.launch()
    if fabric.global_rank != 0:
        os.environ["POCKETVIT_QUIET"] = "1"  # progress bars and logs only on rank 0
    _current = Dist(fabric.device, fabric.global_rank, fabric.world_size, fabric, cfg.strategy,
                    {"precision": precision})
    return _current


def leave() -> bool:
    """End the distributed part of a run: rank 0 carries on alone (export, verify, report), other ranks stop.

    Returns True on the rank that carries on."""
    global _current
    dist = current()
    dist.barrier()
    if dist.world_size > 1:
        _current = Dist(dist.device)
    return dist.is_zero
