"""One training loop for teachers, students and baselines: AdamW + one-cycle LR, resumable per epoch, optionally
in bf16 autocast, with per-parameter LR scales (layer-wise decay) and early stopping on a validation score."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from pocketvit.progress import log, progress_bar

if TYPE_CHECKING:
    from pocketvit.scale.engine import Engine

LossFn = Callable[[torch.Tensor, object], torch.Tensor]


@dataclass
class TrainSettings:
    epochs: int
    lr: float
    weight_decay: float
    steps_per_epoch: int
    warmup_frac: float = 0.1
    grad_clip: float = 5.0
    channels_last: bool = True  # NHWC convolutions: ~17% faster training of the default student on CPU
    fast: bool = True  # training-time model forms (models/train_forms.py) + fused AdamW: same function, faster step
    precision: str = "fp32"  # fp32 | bf16: forward and loss under bf16 autocast (CPUs with AMX-BF16, GPUs)
    lr_scale: Callable[[str], float] | None = None  # LR multiplier per parameter name (layer-wise decay)
    train_mode: Callable[[nn.Module], None] | None = None  # instead of model.train(): e.g. frozen layers kept in eval


@dataclass
class Validation:
    """Scored after every epoch (higher is better, e.g. val top-1): the best epoch's weights are what `train`
    leaves in the model; with `patience`, training stops after that many epochs without a better score."""

    score: Callable[[nn.Module], float]
    patience: int | None = None
    min_delta: float = 0.0


def plan_epochs(epochs: int, steps_per_epoch: int, steps: int | None = None, min_steps: int = 0) -> int:
    """Epochs a training runs: `steps` optimizer steps rounded up to whole epochs when given, else `epochs`
    grown until they make at least `min_steps` steps (so a small folder still gets a real training)."""
    spe = max(1, steps_per_epoch)
    if steps:
        return max(1, math.ceil(steps / spe))
    return max(epochs, math.ceil(min_steps / spe)) if min_steps else epochs


def _lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


def _param_groups(model: nn.Module, weight_decay: float,
                  lr_scale: Callable[[str], float] | None = None) -> list[dict]:
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decays = not (p.ndim <= 1 or name.endswith(".bias"))
        groups.setdefault((decays, 1.0 if lr_scale is None else float(lr_scale(name))), []).append(p)
    if lr_scale is None:  # the plain two groups, in the order earlier checkpoints hold them
        return [{"params": groups.get((True, 1.0), []), "weight_decay": weight_decay},
                {"params": groups.get((False, 1.0), []), "weight_decay": 0.0}]
    return [{"params": ps, "weight_decay": weight_decay if decays else 0.0, "lr_scale": scale}
            for (decays, scale), ps in sorted(groups.items(), key=lambda kv: (not kv[0][0], -kv[0][1]))]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, fused: bool,
                   lr_scale: Callable[[str], float] | None = None) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only. `fused`: one kernel for all parameters (same update within
    float rounding; the for-loop version is PyTorch's CPU default) where every parameter is a plain CPU/CUDA tensor.
    `lr_scale(name)`: that parameter's LR multiplier (groups carry it as `lr_scale`)."""
    groups = _param_groups(model, weight_decay, lr_scale)
    plain = all(type(p) in (torch.Tensor, nn.Parameter) and p.device.type in ("cpu", "cuda")
                for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=lr, fused=True if fused and plain else None)


def train(
    model: nn.Module,
    batches: Callable[..., Iterable[tuple[torch.Tensor, object]]],
    loss_fn: LossFn,
    settings: TrainSettings,
    work_dir: Path,
    description: str,
    device: torch.device | None = None,
    validation: Validation | None = None,
    summary: dict[str, Any] | None = None,
) -> nn.Module:
    """Train `model` in place. `batches(epoch)` yields global (inputs, target) batches, inputs already normalized.

    After each epoch the model, optimizer and epoch are saved to work_dir/checkpoint.pt (atomically),
    so a killed run resumes at the last finished epoch. Under `pocketvit.scale.setup(...)` with several
    processes each rank trains on its rows of every global batch (DDP through Lightning Fabric; a producer
    taking `shard=(rank, world)` builds only those rows) and rank 0 writes the checkpoint. `device` applies
    to a single-process run only. With `validation`, the best epoch's weights (work_dir/best.pt) are what the
    model holds at the end, and training stops early after `validation.patience` epochs without a better score.
    `summary` (a dict) receives what ran: steps, epochs, and the validation history.
    """
    from pocketvit.models.train_forms import training_form
    from pocketvit.scale import current
    from pocketvit.scale.engine import engine_for, rank_batches

    dist = current()
    engine = engine_for(dist, device)
    layout = torch.channels_last if settings.channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    net, opt = engine.setup(model, lambda m: make_optimizer(m, settings.lr, settings.weight_decay, settings.fast,
                                                            settings.lr_scale))
    total = settings.epochs * settings.steps_per_epoch
    warmup = max(1, int(settings.warmup_frac * total))
    ckpt, best_file = work_dir / "checkpoint.pt", work_dir / "best.pt"
    start_epoch, state = 0, {"history": [], "best": None, "best_epoch": 0, "stopped": False}
    if ckpt.exists():
        start_epoch, extra = engine.load(ckpt, net, opt)
        state |= extra
        log(f"[dim]{description}: resuming after epoch {start_epoch}/{settings.epochs}[/dim]")
    step = start_epoch * settings.steps_per_epoch
    with training_form(model, settings.fast), progress_bar(description, total) as advance:
        advance(step)
        for epoch in range(start_epoch, settings.epochs):
            if state["stopped"]:
                break
            net.train()
            if settings.train_mode is not None:
                settings.train_mode(model)
            running, seen = 0.0, 0
            for inputs, target in rank_batches(batches, epoch, dist):
                for g in opt.param_groups:
                    g["lr"] = _lr_at(step, total, settings.lr, warmup) * g.get("lr_scale", 1.0)
                loss = train_step(engine, net, opt, inputs, target, loss_fn, settings.grad_clip, layout,
                                  settings.precision)
                step += 1
                running, seen = running + loss.item(), seen + 1
                advance(1, info=f"epoch {epoch + 1}/{settings.epochs} loss {running / seen:.3f}")
            if validation is not None:  # no early stop before the warm-up is over
                _validate(model, validation, state, epoch, best_file, description, dist.is_zero,
                          can_stop=step >= warmup and epoch + 1 < settings.epochs)
                if state["stopped"]:
                    advance(total - step)
            engine.save(ckpt, net, opt, epoch + 1, state)
    engine.finish(model, ckpt)
    if validation is not None and state["best"] is not None and best_file.exists():
        model.load_state_dict(torch.load(best_file, map_location="cpu", weights_only=True))
    model.to(memory_format=torch.contiguous_format)  # exporters and safetensors expect plain layout
    model.eval()
    if summary is not None:
        epochs_run = len(state["history"]) if validation is not None else settings.epochs
        summary.update(steps=epochs_run * settings.steps_per_epoch, epochs=epochs_run,
                       steps_per_epoch=settings.steps_per_epoch, planned_epochs=settings.epochs)
        if validation is not None:
            summary.update(val_history=[round(v, 6) for v in state["history"]], best_epoch=state["best_epoch"],
                           best_val=state["best"], stopped_early=bool(state["stopped"]))
    return model


def _validate(model: nn.Module, validation: Validation, state: dict[str, Any], epoch: int, best_file: Path,
              description: str, write: bool, can_stop: bool = True) -> None:
    """Score the epoch; keep the best weights; decide whether to stop (state is what the checkpoint carries)."""
    from pocketvit.runtime.io import atomic_path

    model.eval()
    score = float(validation.score(model))
    state["history"].append(score)
    if state["best"] is None or score > state["best"] + validation.min_delta:
        state["best"], state["best_epoch"] = score, epoch + 1
        if write:
            with atomic_path(best_file) as tmp:
                torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, tmp)
    since = epoch + 1 - state["best_epoch"]
    log(f"[dim]  {description}: epoch {epoch + 1} val {score:.4f} (best {state['best']:.4f} at epoch "
        f"{state['best_epoch']})[/dim]")
    if validation.patience is not None and since >= validation.patience and can_stop:
        state["stopped"] = True
        log(f"  {description}: early stop after epoch {epoch + 1}, no better val score for {since} epoch(s); "
            f"keeping epoch {state['best_epoch']} (val {state['best']:.4f})")


def _as_float32(out: object) -> object:
    """A model's output(s) in float32 for the loss (bf16 autocast leaves them bf16); an exit model returns a list."""
    if isinstance(out, torch.Tensor):
        return out.float() if out.dtype != torch.float32 else out
    if isinstance(out, (list, tuple)):
        return type(out)(_as_float32(o) for o in out)
    return out


def train_step(engine: Engine, net: nn.Module, opt: torch.optim.Optimizer, inputs: torch.Tensor, target: object,
               loss_fn: LossFn, grad_clip: float, layout: torch.memory_format, precision: str = "fp32"
               ) -> torch.Tensor:
    """One optimizer step on this rank's rows; returns the (unweighted) loss."""
    inputs = inputs.to(engine.device, non_blocking=True)
    if inputs.ndim == 4:
        inputs = inputs.contiguous(memory_format=layout)
    with train_autocast(precision, engine.device):
        out = net(inputs)
        loss = loss_fn(_as_float32(out), to_device(target, engine.device))
    opt.zero_grad(set_to_none=True)
    share = engine.share(len(inputs))
    engine.backward(loss if share is None else loss * share)
    if grad_clip:
        engine.clip(net, opt, grad_clip)
    opt.step()
    return loss


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` → bf16 where the hardware computes it natively (CUDA, or a CPU with AVX-512 BF16 / AMX),
    else fp32. Used for teacher inference only: its probabilities are stored as fp16 anyway."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return "bf16" if native else "fp32"


def train_autocast(precision: str, device: torch.device):
    """Context manager for a training step's forward and loss at `precision` (fp32: a no-op; bf16: autocast;
    parameters, gradients and the optimizer stay fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def inference_autocast(precision: str, device: torch.device):
    """Context manager running a model forward at `precision` (fp32 or bf16)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def to_device(target: object, device: torch.device) -> object:
    """A training target on `device`: a tensor, a tuple/list of them, or a dataclass of tensors (the teacher
    cache's SparseLogits); anything else as it is."""
    if isinstance(target, torch.Tensor):
        return target.to(device, non_blocking=True)
    if isinstance(target, (tuple, list)):
        return type(target)(to_device(t, device) for t in target)
    if dataclasses.is_dataclass(target) and not isinstance(target, type):
        return dataclasses.replace(target, **{f.name: to_device(getattr(target, f.name), device)
                                              for f in dataclasses.fields(target)})
    return target


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: Iterable[torch.Tensor], total: int, description: str) -> torch.Tensor:
    """Eager logits over an iterable of normalized batches, with a progress bar."""
    device = next(model.parameters()).device
    model.eval()
    outs = []
    with progress_bar(description, total) as advance:
        for x in inputs:
            outs.append(model(x.to(device)).float().cpu())
            advance(len(x))
    return torch.cat(outs)
