"""Graph-rewrite utilities the rewrite families share: replace matching modules, a two-pass norm, the conv a
folded BatchNorm or gate becomes. Imports torch only inside the functions (export stays lazy)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def replace_modules(model: torch.nn.Module, match: Callable, make: Callable) -> int:
    """Replace every child module for which match(child) holds by make(child); returns how many."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if match(child):
                setattr(parent, name, make(child))
                count += 1
    return count


def two_pass_norm(x: torch.Tensor, mean: Callable, eps: float, weight, bias) -> torch.Tensor:
    """(x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps), then the affine: torch's two-pass layer norm with
    the statistic written in whatever form the backend takes (linear, 1x1 conv, keepdim mean)."""
    import torch

    xc = x - mean(x)
    y = xc * torch.rsqrt(mean(xc * xc) + eps)
    if weight is not None:
        y = y * weight
    return y + bias if bias is not None else y


def is_depthwise7(m: torch.nn.Module) -> bool:
    """A stride-1 7x7 depthwise nn.Conv2d with zero 'same' padding (what the 7x7 rewrites replace)."""
    from torch import nn

    return (type(m) is nn.Conv2d and m.groups == m.in_channels == m.out_channels and m.kernel_size == (7, 7)
            and m.stride == (1, 1) and m.dilation == (1, 1) and m.padding in ((3, 3), "same")
            and m.padding_mode == "zeros")


def fold_batchnorm_after(model: torch.nn.Module, match) -> int:
    """timm ConvNormAct (conv then bn) whose conv matches: the eval BatchNorm folded into the conv, its
    dropout/activation kept. The converter folds a BatchNorm into one conv but not into a sum of four."""
    try:
        from timm.layers import ConvNormAct
    except ImportError:
        return 0
    import torch
    from torch import nn

    count = 0
    for m in model.modules():
        bn = getattr(m, "bn", None)
        if not (type(m) is ConvNormAct and match(m.conv) and isinstance(bn, nn.BatchNorm2d) and not bn.training
                and bn.track_running_stats and getattr(m, "aa", None) is None):
            continue
        with torch.no_grad():
            scale = torch.rsqrt(bn.running_var + bn.eps) * (bn.weight if bn.affine else 1.0)
            shift = (bn.bias if bn.affine else 0.0) - bn.running_mean * scale
            conv = m.conv
            m.conv = conv_like(conv, conv.weight * scale.reshape(-1, 1, 1, 1),
                               shift + (conv.bias * scale if conv.bias is not None else 0.0))
        m.bn = nn.Sequential(*(getattr(bn, a) for a in ("drop", "act") if isinstance(getattr(bn, a, None), nn.Module)))
        count += 1
    return count


def conv_like(conv: torch.nn.Conv2d, weight: torch.Tensor, bias) -> torch.nn.Conv2d:
    """A new nn.Conv2d with `conv`'s shape, stride, padding, dilation and groups, holding `weight` and `bias` (a
    tensor, or a number for every channel): what a rewrite that folds arithmetic into a conv builds."""
    import torch
    from torch import nn

    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                       padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True)
    with torch.no_grad():
        folded.weight.copy_(weight)
        folded.bias.copy_(torch.as_tensor(bias, dtype=folded.bias.dtype).expand_as(folded.bias))
    return folded
