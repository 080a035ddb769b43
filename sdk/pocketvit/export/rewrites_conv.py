"""Rewrites for convnets on ExecuTorch (XNNPACK); registered in export/rewrites.py.

layernorm2d-as-conv: timm's channels-first LayerNorm2d (ConvNeXt with conv_mlp, TinyViT's head) runs as
permute + native_layer_norm + permute, and XNNPACK takes no layer norm: ConvNeXt-atto was cut into 19
delegate calls around 17 portable layer norms. The channel mean and variance as 1x1 convs with a 1/C
kernel (one output channel) stay in XNNPACK's channels-last layout: no permutes, no boundaries. (The
same statistics as linears between two permutes took the delegate calls to 1 but ran slower.)

hardsigmoid-as-hardtanh: torch decomposes hardsigmoid to add/clamp/div with integer scalars, and each
int64 scalar becomes a dtype-converting copy outside the delegate (MobileNetV3's squeeze-excite gates:
16 copies). `hardtanh(x + 3.0, 0, 6) / 6.0` is the same arithmetic with float scalars.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _layernorm2d_as_conv(model: torch.nn.Module) -> int:
    """timm LayerNorm2d over (B, C, H, W): mean and variance over C as 1x1 convs (two-pass, as torch's kernel)."""
    try:
        from timm.layers import LayerNorm2d
    except ImportError:
        return 0
    import torch
    import torch.nn.functional as F
    from torch import nn

    class ConvLayerNorm2d(nn.Module):
        def __init__(self, ln: nn.Module):
            super().__init__()
            c = ln.normalized_shape[0]
            self.eps = ln.eps
            self.register_buffer("avg", torch.full((1, c, 1, 1), 1.0 / c), persistent=False)
            self.weight = None if ln.weight is None else nn.Parameter(ln.weight.detach().reshape(1, c, 1, 1))
            self.bias = None if ln.bias is None else nn.Parameter(ln.bias.detach().reshape(1, c, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return _two_pass_norm(x, lambda t: F.conv2d(t, self.avg), self.eps, self.weight, self.bias)

    from pocketvit.export.rewrites import _replace, _two_pass_norm  # at call time (import cycle)

    return _replace(model, lambda m: type(m) is LayerNorm2d and len(m.normalized_shape) == 1, ConvLayerNorm2d)


def _hardsigmoid_as_hardtanh(model: torch.nn.Module) -> int:
    """nn.Hardsigmoid as hardtanh(x + 3.0, 0, 6) / 6.0: float scalars, no int64 constant copies outside XNNPACK."""
    import torch.nn.functional as F
    from torch import nn

    class HardtanhSigmoid(nn.Module):
        def forward(self, x):
            return F.hardtanh(x + 3.0, 0.0, 6.0) / 6.0

    from pocketvit.export.rewrites import _replace

    return _replace(model, lambda m: type(m) is nn.Hardsigmoid, lambda _m: HardtanhSigmoid())
