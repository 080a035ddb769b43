"""Parameter and FLOP counts (FLOPs = 2 x multiply-accumulates, counted by torch's FlopCounterMode)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_gflops(model: torch.nn.Module, shape: tuple[int, ...]) -> float:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *shape, device=device))
    model.train(was_training)
    return counter.get_total_flops() / 1e9
