"""Rewrites for LiteRT (litert-torch -> .tflite -> XNNPACK); registered in export/rewrites.py.

depthwise7-as-5x5: a 7x7 depthwise conv costs 7.5-12x ONNX Runtime's CPU time in XNNPACK, a 5x5 one
1.9x (README, LiteRT section); four 5x5 convs over zero-filled windows of the 7x7 kernel are faster.
ExecuTorch's XNNPACK has the same slow kernel, so this one is registered for ExecuTorch too
(ConvNeXt-atto 1.73x -> 1.10x ONNX Runtime, `python -m benchmarks.executorch_ab`).

layernorm-keepdim: litert-torch lowers `F.layer_norm` to per-position statistics of rank 1 (MEAN
without keepdims, SQUARED_DIFFERENCE, RSQRT, ...) with a RESHAPE back before every broadcast (5 per
LayerNorm); with keepdim statistics one RESHAPE is left. A LayerNorm alone runs 0.31 -> 0.22 ms; on
whole models (ConvNeXt-atto, DeiT-tiny, TinyViT-5M) the change is within noise.

linear-attention-broadcast: MobileViTv2's separable self-attention (timm `LinearSelfAttention`) multiplies a
(B, d, P, N) map by a (B, 1, P, N) one and then by an `expand_as` of a (B, d, P, 1) one. litert-torch 0.10 rejects
the graph ("'tfl.mul' op operands don't have broadcast-compatible shapes") when one of those multiplies broadcasts
implicitly and the other through expand: written with plain broadcasting for both (no expand_as) it converts, with
the same arithmetic. Measured on the module alone and on mobilevitv2_050 (tests/export/test_rewrites_litert.py).

nearest-resize-as-gather: litert-torch 0.10 lowers `F.interpolate(mode="nearest")` to RESIZE_NEAREST_NEIGHBOR with
half-pixel centers, which picks other source pixels than torch's `floor(dst * in / out)` whenever the scale is not
an integer (3 -> 7: torch repeats pixel 0 three times, LiteRT twice). GhostNetV2's DFC attention upsamples its gate
that way at odd map sizes (7 x 7 at 224 x 224 input), so its LiteRT file missed fp32 parity (max abs diff 0.024).
The rewrite picks the rows and columns torch picks, with two index_selects over constant indices (exact).

cascaded-attention-transposed-matmul (LiteRT int8 only): EfficientViT-M's CascadedGroupAttention computes
`v @ attn^T` and reshapes the product to a map; in int8 litert-torch 0.10 folds that reshape into the
BATCH_MATMUL and fails ("'tfl.batch_matmul' op found invalid output rank, expected 3 but got 4"). Written as
`(attn @ v^T)^T` (the same dot products) the product is transposed before the reshape and the model converts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pocketvit.export.rewrite_graph import (
    fold_batchnorm_after,
    is_depthwise7,
    replace_modules,
    two_pass_norm,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch


def layernorm_keepdim(model: torch.nn.Module) -> int:
    """nn.LayerNorm / timm LayerNorm over the last dim and timm's channels-first LayerNorm2d as keepdim
    mean and variance (same two-pass arithmetic as torch's kernel)."""
    from torch import nn

    def norm_last(x: torch.Tensor, ln: nn.Module) -> torch.Tensor:
        return two_pass_norm(x, lambda t: t.mean(-1, keepdim=True), ln.eps, ln.weight, ln.bias)

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

    return replace_modules(model, plain, lambda m: KeepdimLayerNorm(m, type(m) in first))


def depthwise7_as_5x5(model: torch.nn.Module) -> int:
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

    fold_batchnorm_after(model, is_depthwise7)
    return replace_modules(model, is_depthwise7, Depthwise7As5x5)


def maxpool_edge_pad(model: torch.nn.Module) -> int:
    """nn.MaxPool2d with padding as edge-replicating concatenations, then the pool without padding: litert-torch
    writes max-pool padding as a PADV2 with -inf, which XNNPACK does not take (a second delegate call and a copy
    of the map outside). Exact for every input: a window that reaches p < kernel rows past an edge also holds
    that edge row, so a copy of it adds nothing a -inf would not."""
    import torch
    import torch.nn.functional as F
    from torch import nn

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

    return replace_modules(model, padded, EdgePadMaxPool)




def nearest_indices(n_in: int, n_out: int) -> list[int]:
    """The source index torch's nearest interpolation reads for each output index: floor(d * (in / out)) in float32
    (aten's nearest_idx), clamped to the last pixel."""
    import numpy as np

    scale = np.float32(n_in) / np.float32(n_out)
    return [min(int(np.floor(np.float32(d) * scale)), n_in - 1) for d in range(n_out)]


def nearest_resize_gather(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """F.interpolate(x, size, mode="nearest") of an NCHW map as two index_selects (static shapes)."""
    import torch

    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    rows = torch.tensor(nearest_indices(h, size[0]), dtype=torch.long, device=x.device)
    cols = torch.tensor(nearest_indices(w, size[1]), dtype=torch.long, device=x.device)
    return x.index_select(2, rows).index_select(3, cols)


def nearest_resize_as_gather(model: torch.nn.Module) -> int:
    """timm GhostNetV2 `GhostModuleV2` (DFC attention) with its gate upsampled by nearest_resize_gather instead of
    F.interpolate: LiteRT's RESIZE_NEAREST_NEIGHBOR picks other pixels at non-integer scales."""
    try:
        from timm.models.ghostnet import GhostModuleV2
    except ImportError:
        return 0
    import torch
    import torch.nn.functional as F
    from torch import nn

    class GatherGhostModuleV2(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            m = self.inner
            res = m.short_conv(F.avg_pool2d(x, kernel_size=2, stride=2))
            x1 = m.primary_conv(x)
            out = torch.cat([x1, m.cheap_operation(x1)], dim=1)
            return out[:, :m.out_chs, :, :] * nearest_resize_gather(m.gate_fn(res), (out.shape[-2], out.shape[-1]))

    needed = ("short_conv", "primary_conv", "cheap_operation", "gate_fn", "out_chs")
    return replace_modules(model, lambda m: type(m) is GhostModuleV2 and all(hasattr(m, n) for n in needed),
                           GatherGhostModuleV2)


def linear_attention_broadcast(model: torch.nn.Module) -> int:
    """timm MobileViTv2 `LinearSelfAttention` (self-attention path) with both of its multiplies broadcasting
    implicitly: `relu(v) * context` instead of `relu(v) * context.expand_as(v)` (same values; litert-torch fails
    to convert the expand_as form). The cross-attention path (x_prev given) runs timm's own code."""
    try:
        from timm.models.mobilevit import LinearSelfAttention
    except ImportError:
        return 0
    import torch.nn.functional as F
    from torch import nn

    class BroadcastLinearSelfAttention(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor, x_prev: torch.Tensor | None = None) -> torch.Tensor:
            a = self.inner
            if x_prev is not None:
                return a(x, x_prev)
            query, key, value = a.qkv_proj(x).split([1, a.embed_dim, a.embed_dim], dim=1)  # (B, 1|d|d, P, N)
            scores = a.attn_drop(F.softmax(query, dim=-1))
            context = (key * scores).sum(dim=-1, keepdim=True)  # (B, d, P, 1)
            return a.out_drop(a.out_proj(F.relu(value) * context))

    needed = ("qkv_proj", "embed_dim", "attn_drop", "out_proj", "out_drop")
    return replace_modules(model, lambda m: type(m) is LinearSelfAttention and all(hasattr(m, n) for n in needed),
                           BroadcastLinearSelfAttention)


def cascaded_attention_transposed_matmul(model: torch.nn.Module) -> int:
    """timm EfficientViT-M `CascadedGroupAttention` with its value product as `(attn @ v^T)^T` instead of
    `v @ attn^T` (the same dot products): litert-torch's int8 conversion folds the reshape after `v @ attn^T`
    into the batch matmul and refuses the rank-4 result."""
    try:
        from timm.models.efficientvit_msra import CascadedGroupAttention
    except ImportError:
        return 0
    import torch
    from torch import nn

    class TransposedCascadedGroupAttention(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner
            self.resolution = inner.resolution  # timm's LocalWindowAttention reads it

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = self.inner
            B, _, H, W = x.shape
            feats_in = x.chunk(len(a.qkvs), dim=1)
            feats_out = []
            feat = feats_in[0]
            attn_bias = a.attention_biases[:, a.attention_bias_idxs]
            for head_idx, (qkv, dws) in enumerate(zip(a.qkvs, a.dws)):
                if head_idx > 0:
                    feat = feat + feats_in[head_idx]
                feat = qkv(feat)
                q, k, v = feat.view(B, -1, H, W).split([a.key_dim, a.key_dim, a.val_dim], dim=1)
                q = dws(q)
                q, k, v = q.flatten(2), k.flatten(2), v.flatten(2)
                attn = ((q * a.scale).transpose(-2, -1) @ k + attn_bias[head_idx]).softmax(dim=-1)
                feat = (attn @ v.transpose(-2, -1)).transpose(-2, -1)  # timm: v @ attn.transpose(-2, -1)
                feat = feat.reshape(B, a.val_dim, H, W)
                feats_out.append(feat)
            return a.proj(torch.cat(feats_out, 1))

    needed = ("qkvs", "dws", "attention_biases", "attention_bias_idxs", "key_dim", "val_dim", "scale", "proj",
              "resolution")
    return replace_modules(model, lambda m: type(m) is CascadedGroupAttention and all(hasattr(m, n) for n in needed),
                           TransposedCascadedGroupAttention)
