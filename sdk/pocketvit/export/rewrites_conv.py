"""Rewrites for convnets on ExecuTorch (XNNPACK); registered in export/rewrites.py.

layernorm2d-as-conv: timm's channels-first LayerNorm2d (ConvNeXt with conv_mlp, TinyViT's head) runs as
permute + native_layer_norm + permute, and XNNPACK takes no layer norm: ConvNeXt-atto was cut into 19
delegate calls around 17 portable layer norms. The channel mean and variance as 1x1 convs with a 1/C
kernel (one output channel) stay in XNNPACK's channels-last layout: no permutes, no boundaries. (The
same statistics as linears between two permutes took the delegate calls to 1 but ran slower.)

depthwise7-as-core-ring: a stride-1 7x7 depthwise conv as a 5x5 core plus its border as two dilated
depthwise convs (rows dy = +-3 as a 2x7 kernel with dilation (6, 1), columns dx = +-3 as a 5x2 kernel with
dilation (1, 6)): 49 taps in three convs with symmetric padding and one output size, where the 5x5 split
runs 100 taps and slices four padded outputs. XNNPACK F32, one conv, 1 thread CPU time: 56x56x40 1180 ->
836 us, 14x14x160 285 -> 180 us, 7x7x320 198 -> 101 us (one 7x7: 2846, 652, 320 us). ExecuTorch only
(registered before depthwise7-as-5x5, which then finds nothing; switching this one off brings the split
back); LiteRT keeps the split (litert-torch turns each conv padding into its own PAD, unmeasured).

silu-as-sigmoid-mul (ExecuTorch int8 only): XNNPACKQuantizer annotates sigmoid and mul but not silu, so
every SiLU stayed a float sigmoid + multiply between two converts (EfficientNet-B0: 49 of them); written
as x * sigmoid(x) both get int8 (a lookup-table sigmoid and a QS8 multiply).

hardsigmoid-as-hardtanh: torch decomposes hardsigmoid to add/clamp/div with integer scalars, and each
int64 scalar becomes a dtype-converting copy outside the delegate (MobileNetV3's squeeze-excite gates:
16 copies). `hardtanh(x + 3.0, 0, 6) / 6.0` is the same arithmetic with float scalars.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pocketvit.export.rewrite_graph import (
    conv_like,
    fold_batchnorm_after,
    is_depthwise7,
    replace_modules,
    two_pass_norm,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch


def layernorm2d_as_conv(model: torch.nn.Module) -> int:
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
            return two_pass_norm(x, lambda t: F.conv2d(t, self.avg), self.eps, self.weight, self.bias)

    return replace_modules(model, lambda m: type(m) is LayerNorm2d and len(m.normalized_shape) == 1, ConvLayerNorm2d)


def depthwise7_as_core_ring(model: torch.nn.Module) -> int:
    """Stride-1 7x7 depthwise nn.Conv2d as a 5x5 core + 2x7 (dilation 6, 1) + 5x2 (dilation 1, 6) depthwise convs."""
    import torch.nn.functional as F
    from torch import nn

    class Depthwise7AsCoreRing(nn.Module):
        def __init__(self, conv: nn.Conv2d):
            super().__init__()
            w = conv.weight.detach()  # (C, 1, 7, 7)
            # separate constants: indexing a stacked buffer is a select_copy outside the delegate
            self.register_buffer("core", w[:, :, 1:6, 1:6].clone(), persistent=False)
            self.register_buffer("rows", w[:, :, [0, 6], :].clone(), persistent=False)
            self.register_buffer("cols", w[:, :, 1:6][:, :, :, [0, 6]].clone(), persistent=False)
            self.bias, self.groups = conv.bias, conv.groups

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            g = self.groups
            y = F.conv2d(x, self.core, self.bias, padding=2, groups=g)
            y = y + F.conv2d(x, self.rows, None, padding=3, dilation=(6, 1), groups=g)
            return y + F.conv2d(x, self.cols, None, padding=(2, 3), dilation=(1, 6), groups=g)

    fold_batchnorm_after(model, is_depthwise7)
    return replace_modules(model, is_depthwise7, Depthwise7AsCoreRing)


def silu_as_sigmoid_mul(model: torch.nn.Module) -> int:
    """nn.SiLU as x * sigmoid(x), which the int8 quantizer annotates (it leaves silu float)."""
    import torch
    from torch import nn

    class SigmoidMul(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.sigmoid(x)

    return replace_modules(model, lambda m: type(m) is nn.SiLU, lambda _m: SigmoidMul())


def hardsigmoid_as_hardtanh(model: torch.nn.Module) -> int:
    """nn.Hardsigmoid as hardtanh(x + 3.0, 0, 6) / 6.0: float scalars, no int64 constant copies outside XNNPACK."""
    import torch.nn.functional as F
    from torch import nn

    class HardtanhSigmoid(nn.Module):
        def forward(self, x):
            return F.hardtanh(x + 3.0, 0.0, 6.0) / 6.0

    return replace_modules(model, lambda m: type(m) is nn.Hardsigmoid, lambda _m: HardtanhSigmoid())


def se_hardsigmoid_into_conv(model: torch.nn.Module) -> int:
    """Squeeze-excite gates hardsigmoid(conv(s)) as hardtanh(conv'(s), 0, 1), conv' = (conv + 3) / 6 folded into
    the conv's weights: the clamp fuses into XNNPACK's conv, three elementwise ops per gate go (timm SqueezeExcite,
    torchvision SqueezeExcitation)."""
    import torch
    from torch import nn

    pairs = []  # (module, conv attribute, gate attribute)
    try:
        from timm.models._efficientnet_blocks import SqueezeExcite
        pairs.append((SqueezeExcite, "conv_expand", "gate"))
    except ImportError:
        pass
    try:
        from torchvision.ops.misc import SqueezeExcitation
        pairs.append((SqueezeExcitation, "fc2", "scale_activation"))
    except ImportError:
        pass
    count = 0
    for m in model.modules():
        for cls, conv_name, gate_name in pairs:
            conv, gate = getattr(m, conv_name, None), getattr(m, gate_name, None)
            if not (type(m) is cls and type(conv) is nn.Conv2d and type(gate) is nn.Hardsigmoid):
                continue
            with torch.no_grad():
                folded = conv_like(conv, conv.weight / 6.0, ((conv.bias if conv.bias is not None else 0.0) + 3.0) / 6.0)
            setattr(m, conv_name, folded)
            setattr(m, gate_name, nn.Hardtanh(0.0, 1.0))
            count += 1
    return count


def hardswish_as_hardtanh_mul(model: torch.nn.Module) -> int:
    """nn.Hardswish as x * hardtanh(x + 3, 0, 6) * (1 / 6) before LiteRT int8: XNNPACK does not take an int8
    HARD_SWISH (each one a delegate boundary), but takes int8 ADD, clamp and MUL."""
    import torch.nn.functional as F
    from torch import nn

    class HardtanhSwish(nn.Module):
        def forward(self, x):
            return x * F.hardtanh(x + 3.0, 0.0, 6.0) * (1.0 / 6.0)

    return replace_modules(model, lambda m: type(m) is nn.Hardswish, lambda _m: HardtanhSwish())
