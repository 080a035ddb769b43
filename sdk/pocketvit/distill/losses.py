"""Distillation losses on the sparse teacher cache (TinyViT) with an optional temperature (Hinton KD)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from pocketvit.distill.cache import SparseLogits, sparse_soft_cross_entropy


def tempered_target(target: SparseLogits, num_classes: int, temperature: float) -> torch.Tensor:
    """The cached distribution re-tempered: softmax(z/T) = p^(1/T) renormalised, exact on the stored top-k
    (p ∝ exp(z)); the classes outside the top-k keep their even share of the leftover mass before tempering."""
    dense = target.dense(num_classes).clamp_min(1e-12)
    if temperature == 1.0:
        return dense
    q = dense.log().div(temperature).softmax(dim=1)
    return q


def sparse_kd_loss(temperature: float = 1.0) -> Callable[[torch.Tensor, SparseLogits], torch.Tensor]:
    """T^2 * CE(softmax(student/T), teacher at T); T = 1 is the plain sparse soft cross-entropy."""
    if temperature == 1.0:
        return sparse_soft_cross_entropy

    def loss(logits: torch.Tensor, target: SparseLogits) -> torch.Tensor:
        q = tempered_target(target, logits.shape[1], temperature).to(logits.dtype)
        return -(q * torch.log_softmax(logits / temperature, dim=1)).sum(1).mean() * temperature**2

    return loss
