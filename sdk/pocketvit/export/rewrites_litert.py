"""Rewrites for LiteRT (litert-torch -> .tflite -> XNNPACK); registered in export/rewrites.py.

litert-torch lowers `F.layer_norm` to per-position statistics of rank 1 (MEAN without keepdims,
SQUARED_DIFFERENCE, RSQRT, ...) with a RESHAPE back to rank 3 before every broadcast: 9 elementwise
ops and 5 RESHAPEs per LayerNorm, each a pass over memory inside XNNPACK (its static reshape is a
copy). Written with keepdim statistics the same LayerNorm becomes MEAN, SUB, MUL, MEAN, ADD, RSQRT,
MUL, MUL, ADD and one RESHAPE (tests/export/test_rewrites_litert.py counts them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _layernorm_keepdim(model: torch.nn.Module) -> int:
    """nn.LayerNorm / timm LayerNorm over the last dim and timm's channels-first LayerNorm2d as keepdim
    mean and variance (same two-pass arithmetic as torch's kernel)."""
    import torch
    from torch import nn

    def norm_last(x: torch.Tensor, ln: nn.Module) -> torch.Tensor:
        xc = x - x.mean(-1, keepdim=True)
        y = xc * torch.rsqrt((xc * xc).mean(-1, keepdim=True) + ln.eps)
        if ln.weight is not None:
            y = y * ln.weight
        return y + ln.bias if ln.bias is not None else y

    class KeepdimLayerNorm(nn.Module):
        def __init__(self, ln: nn.Module, channels_first: bool):
            super().__init__()
            self.ln, self.channels_first = ln, channels_first

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.channels_first:
                return norm_last(x, self.ln)
            return norm_last(x.permute(0, 2, 3, 1), self.ln).permute(0, 3, 1, 2)  # as timm's LayerNorm2d does

    last, first = {nn.LayerNorm}, set()
    try:
        from timm.layers import LayerNorm as TimmLayerNorm
        from timm.layers import LayerNorm2d

        last.add(TimmLayerNorm)
        first.add(LayerNorm2d)
    except ImportError:
        pass
    from pocketvit.export.rewrites import _replace  # at call time: rewrites.py imports this module

    def plain(m: nn.Module) -> bool:
        return type(m) in last | first and len(m.normalized_shape) == 1 and m.elementwise_affine

    return _replace(model, plain, lambda m: KeepdimLayerNorm(m, type(m) in first))
