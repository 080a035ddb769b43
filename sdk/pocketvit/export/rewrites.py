"""Numerics-preserving rewrites that keep whole networks inside a backend's delegate.

Each rewrite is chosen by module type (never by model name), is small, and can be switched off by
name so a user can compare and report a toolchain bug. `apply_rewrites` returns what it changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _layernorm_as_linear(model: "torch.nn.Module") -> int:
    """nn.LayerNorm over the last dim → mean/variance as linear layers (XNNPACK leaves native_layer_norm out)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class LinearLayerNorm(nn.Module):
        def __init__(self, ln: nn.LayerNorm):
            super().__init__()
            c = ln.normalized_shape[-1]
            self.eps = ln.eps
            self.register_buffer("avg", torch.full((1, c), 1.0 / c), persistent=False)
            self.weight, self.bias = ln.weight, ln.bias

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            xc = x - F.linear(x, self.avg)
            y = xc * torch.rsqrt(F.linear(xc * xc, self.avg) + self.eps)
            if self.weight is not None:
                y = y * self.weight
            return y + self.bias if self.bias is not None else y

    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.LayerNorm and len(child.normalized_shape) == 1:
                setattr(parent, name, LinearLayerNorm(child))
                count += 1
    return count


@dataclass(frozen=True)
class Rewrite:
    name: str
    doc: str
    targets: tuple[str, ...]
    apply: Callable[["torch.nn.Module"], int]


REWRITES: tuple[Rewrite, ...] = (
    Rewrite("layernorm-as-linear", "LayerNorm's mean and variance as linear layers the delegate takes",
            ("executorch",), _layernorm_as_linear),
)


def rewrite_names() -> list[str]:
    return [r.name for r in REWRITES]


def apply_rewrites(model: "torch.nn.Module", target: str, disabled: Iterable[str] = ()) -> dict[str, int]:
    """Apply every rewrite meant for `target` that is not disabled ("all" disables every one)."""
    from pocketvit.errors import ExportError

    disabled = set(disabled)
    unknown = disabled - set(rewrite_names()) - {"all"}
    if unknown:
        raise ExportError(f"unknown rewrite(s) {sorted(unknown)}; known: {', '.join(rewrite_names())}")
    applied = {}
    for r in REWRITES:
        if target in r.targets and r.name not in disabled and "all" not in disabled:
            n = r.apply(model)
            if n:
                applied[r.name] = n
    return applied
