"""LGViT's two training stages, each resumable through distill/trainer.py.

Stage 1: end to end, a weighted sum of every exit's distillation loss (the teacher cache's sparse soft
labels, as in the distill stage). Stage 2: backbone frozen, each exit head self-distils from the final
head: (1 - alpha) * distillation loss + alpha * T^2 * KL(final / T || exit / T).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from pocketvit.distill.cache import SparseLogits, sparse_soft_cross_entropy
from pocketvit.distill.trainer import TrainSettings, train
from pocketvit.exits.model import EarlyExitModel

Batches = Callable[[int], Iterable[tuple[torch.Tensor, object]]]


def _target_loss(logits: torch.Tensor, target: object) -> torch.Tensor:
    if isinstance(target, SparseLogits):
        return sparse_soft_cross_entropy(logits, target)
    return F.cross_entropy(logits, target)  # labels (tests, label-only recipes)


def stage1_loss(weights: Sequence[float]) -> Callable[[list[torch.Tensor], object], torch.Tensor]:
    w = [float(v) for v in weights]
    total = sum(w)

    def loss(outs: list[torch.Tensor], target: object) -> torch.Tensor:
        return sum(wi * _target_loss(o, target) for wi, o in zip(w, outs)) / total

    return loss


def stage2_loss(alpha: float, temperature: float) -> Callable[[list[torch.Tensor], object], torch.Tensor]:
    t = float(temperature)

    def loss(outs: list[torch.Tensor], target: object) -> torch.Tensor:
        final = torch.softmax(outs[-1].detach().float() / t, dim=1)
        parts = []
        for o in outs[:-1]:
            kl = F.kl_div(torch.log_softmax(o.float() / t, dim=1), final, reduction="batchmean") * t * t
            parts.append((1 - alpha) * _target_loss(o, target) + alpha * kl)
        return sum(parts) / len(parts)

    return loss


def default_weights(num_exits: int) -> list[float]:
    """Deeper exits weigh more (i / (E + 1) for exit i, 1 for the final head)."""
    return [(i + 1) / (num_exits + 1) for i in range(num_exits)] + [1.0]


def train_exits(
    model: EarlyExitModel,
    batches: Batches,
    steps_per_epoch: int,
    work_dir: Path,
    *,
    stage1_epochs: int,
    stage1_lr: float,
    stage2_epochs: int,
    stage2_lr: float,
    weight_decay: float = 0.05,
    weights: Sequence[float] | None = None,
    alpha: float = 0.3,
    temperature: float = 2.0,
) -> EarlyExitModel:
    """Both stages in place; each keeps its own checkpoint (work_dir/stage1, work_dir/stage2)."""
    weights = list(weights) if weights else default_weights(model.num_exits)
    if stage1_epochs > 0:
        s1 = TrainSettings(epochs=stage1_epochs, lr=stage1_lr, weight_decay=weight_decay, steps_per_epoch=steps_per_epoch)
        (work_dir / "stage1").mkdir(parents=True, exist_ok=True)
        train(model, batches, stage1_loss(weights), s1, work_dir / "stage1", "exits stage 1 (all exits, end to end)")
    if stage2_epochs > 0:
        model.freeze_backbone()
        s2 = TrainSettings(epochs=stage2_epochs, lr=stage2_lr, weight_decay=weight_decay, steps_per_epoch=steps_per_epoch)
        (work_dir / "stage2").mkdir(parents=True, exist_ok=True)
        train(model, batches, stage2_loss(alpha, temperature), s2, work_dir / "stage2",
              "exits stage 2 (heads self-distil, backbone frozen)")
    return model.eval()


@torch.no_grad()
def exit_logits(model: EarlyExitModel, inputs: Iterable[torch.Tensor]) -> torch.Tensor:
    """Eager logits of every exit: (E + 1, N, classes), final head last."""
    model.eval()
    device = next(model.parameters()).device
    outs = [torch.stack([o.float().cpu() for o in model(x.to(device))]) for x in inputs]
    return torch.cat(outs, dim=1)
