"""BatchNorm over the *global* batch while several processes train (DDP), on the CPU too.

Plain DDP normalizes each rank's slice with its own statistics, so a BatchNorm model trained on N
processes differs from the same model trained on one. torch's SyncBatchNorm fixes that on GPUs only;
`GlobalBatchNorm` all-reduces the per-channel sums (and, in the backward pass, their gradients) with
torch.distributed, which works on gloo (CPU) and nccl alike. The trainer swaps it in for the length of a multi-process
run and puts the caller's own BatchNorm modules back afterwards (exporters match on their type).
"""

from __future__ import annotations

import torch
import torch.distributed as tdist
from torch import nn


class _SumOverRanks(torch.autograd.Function):
    """Sum over the ranks, differentiable: the gradient of every rank's loss reaches every rank's input."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        tdist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        tdist.all_reduce(out)
        return out


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm1d/2d/3d whose training statistics cover every rank's rows."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1):
            return super().forward(x)
        c, dims = x.shape[1], [0, *range(2, x.dim())]
        xf = x.float()
        local = torch.cat([xf.sum(dims), (xf * xf).sum(dims), xf.new_tensor([x.numel() // c])])
        total = _SumOverRanks.apply(local)
        n = total[-1]
        mean = total[:c] / n
        var = (total[c : 2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), m)
                self.running_var.lerp_((var * n / (n - 1).clamp_min(1)).to(self.running_var.dtype), m)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


Swap = tuple[nn.Module, str, nn.modules.batchnorm._BatchNorm, GlobalBatchNorm]


def use_global_batchnorm(model: nn.Module) -> list[Swap]:
    """Replace every BatchNorm of `model` by a GlobalBatchNorm sharing its parameters and buffers."""
    swaps: list[Swap] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlobalBatchNorm):
                g = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats)
                g.train(child.training)
                g.weight, g.bias = child.weight, child.bias
                for buf in ("running_mean", "running_var", "num_batches_tracked"):
                    setattr(g, buf, getattr(child, buf))
                setattr(parent, name, g)
                swaps.append((parent, name, child, g))
    return swaps


def restore_batchnorm(swaps: list[Swap]) -> None:
    """Put the original modules back, with the trained statistics (`.to(device)` may have replaced buffers)."""
    for parent, name, original, g in swaps:
        for attr in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            setattr(original, attr, getattr(g, attr))
        original.train(g.training)
        setattr(parent, name, original)
