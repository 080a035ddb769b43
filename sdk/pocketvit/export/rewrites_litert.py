"""Rewrites for LiteRT (litert-torch -> .tflite -> XNNPACK); registered in export/rewrites.py.

depthwise7-as-5x5: a 7x7 depthwise conv costs 7.5-12x ONNX Runtime's CPU time in XNNPACK, a 5x5 one
1.9x (README, LiteRT section); four 5x5 convs over zero-filled windows of the 7x7 kernel are faster.
ExecuTorch's XNNPACK has the same slow kernel, so this one is registered for ExecuTorch too
(ConvNeXt-atto 1.73x -> 1.10x ONNX Runtime, `python -m benchmarks.executorch_ab`).

layernorm-keepdim: litert-torch lowers `F.layer_norm` to per-position statistics of rank 1 (MEAN
without keepdims, SQUARED_DIFFERENCE, RSQRT, ...) with a RESHAPE back before every broadcast (5 per
LayerNorm); with keepdim statistics one RESHAPE is left. A LayerNorm alone runs 0.31 -> 0.22 ms; on
whole models (ConvNeXt-atto, DeiT-tiny, TinyViT-5M) the change is within noise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _layernorm_keepdim(model: torch.nn.Module) -> int:
    """nn.LayerNorm / timm LayerNorm over the last dim and timm's channels-first LayerNorm2d as keepdim
    mean and variance (same two-pass arithmetic as torch's kernel)."""
    from torch import nn

    from pocketvit.export.rewrites import _replace, _two_pass_norm  # at call time (import cycle)

    def norm_last(x: torch.Tensor, ln: nn.Module) -> torch.Tensor:
        return _two_pass_norm(x, lambda t: t.mean(-1, keepdim=True), ln.eps, ln.weight, ln.bias)

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

    def plain(m: nn.Module) -> bool:
        return type(m) in last | first and len(m.normalized_shape) == 1 and m.elementwise_affine

    return _replace(model, plain, lambda m: KeepdimLayerNorm(m, type(m) in first))


def _depthwise7_as_5x5(model: torch.nn.Module) -> int:
    """Stride-1 7x7 depthwise nn.Conv2d (zero 'same' padding) as the sum of four 5x5 depthwise convs over
    zero-filled windows of its kernel (XNNPACK's 49-tap depthwise conv is 7.5-12x ONNX Runtime's)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Depthwise7As5x5(nn.Module):
        # window offsets -3..1 and -1..3 per axis; a tap goes to the first window (offsets <= 1) or the second
        STARTS = (-3, -1)

        def __init__(self, conv: nn.Conv2d):
            super().__init__()
            w = conv.weight.detach()  # (C, 1, 7, 7)
            parts = []
            for a in self.STARTS:
                for b in self.STARTS:
                    k = torch.zeros(w.shape[0], 1, 5, 5, dtype=w.dtype)
                    for r in range(a, a + 5):
                        for c in range(b, b + 5):
                            if (r <= 1) == (a == -3) and (c <= 1) == (b == -3):
                                k[:, :, r - a, c - b] = w[:, :, r + 3, c + 3]
                    parts.append(k)
            for i, k in enumerate(parts):  # one buffer each: indexing a stacked one is a select_copy in ExecuTorch
                self.register_buffer(f"kernel{i}", k, persistent=False)
            self.bias = conv.bias
            self.groups = conv.groups

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # padding 3 on every side (one PAD shared by the four convs), then each window's output slice:
            # an explicit F.pad per window would cost litert-torch 5 TRANSPOSEs per conv (NCHW pads)
            h, w = x.shape[-2:]
            y = None
            for i, (a, b) in enumerate((a, b) for a in self.STARTS for b in self.STARTS):
                z = F.conv2d(x, getattr(self, f"kernel{i}"), self.bias if i == 0 else None, padding=3, groups=self.groups)
                z = z[:, :, a + 3:a + 3 + h, b + 3:b + 3 + w]
                y = z if y is None else y + z
            return y

    from pocketvit.export.rewrites import _replace  # at call time: rewrites.py imports this module

    _fold_batchnorm_after(model, is_depthwise7)
    return _replace(model, is_depthwise7, Depthwise7As5x5)


def is_depthwise7(m: torch.nn.Module) -> bool:
    """A stride-1 7x7 depthwise nn.Conv2d with zero 'same' padding (what the 7x7 rewrites replace)."""
    from torch import nn

    return (type(m) is nn.Conv2d and m.groups == m.in_channels == m.out_channels and m.kernel_size == (7, 7)
            and m.stride == (1, 1) and m.dilation == (1, 1) and m.padding in ((3, 3), "same")
            and m.padding_mode == "zeros")


def _fold_batchnorm_after(model: torch.nn.Module, match) -> int:
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


def _maxpool_edge_pad(model: torch.nn.Module) -> int:
    """nn.MaxPool2d with padding as edge-replicating concatenations, then the pool without padding: litert-torch
    writes max-pool padding as a PADV2 with -inf, which XNNPACK does not take (a second delegate call and a copy
    of the map outside). Exact for every input: a window that reaches p < kernel rows past an edge also holds
    that edge row, so a copy of it adds nothing a -inf would not."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from pocketvit.export.rewrites import _replace

    class EdgePadMaxPool(nn.Module):
        def __init__(self, pool: nn.MaxPool2d):
            super().__init__()
            self.kernel, self.stride = pool.kernel_size, pool.stride
            self.pad = tuple(pool.padding) if isinstance(pool.padding, tuple) else (pool.padding,) * 2

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for dim, p in ((2, self.pad[0]), (3, self.pad[1])):
                if p:
                    x = torch.cat([x.narrow(dim, 0, 1)] * p + [x] + [x.narrow(dim, x.shape[dim] - 1, 1)] * p, dim)
            return F.max_pool2d(x, self.kernel, self.stride, 0)

    def padded(m: nn.Module) -> bool:
        return (type(m) is nn.MaxPool2d and m.padding not in (0, (0, 0)) and m.dilation in (1, (1, 1))
                and not m.ceil_mode and not m.return_indices)

    return _replace(model, padded, EdgePadMaxPool)


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
