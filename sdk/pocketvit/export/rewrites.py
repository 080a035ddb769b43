"""Numerics-preserving rewrites that keep whole networks inside a backend's delegate.

Each rewrite is chosen by module type (never by model name), is small, and can be switched off by
name so a user can compare and report a toolchain bug. `apply_rewrites` returns what it changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pocketvit.export.rewrite_graph import (
    replace_modules,
    two_pass_norm,
)
from pocketvit.export.rewrites_conv import (
    depthwise7_as_core_ring,
    hardsigmoid_as_hardtanh,
    hardswish_as_hardtanh_mul,
    layernorm2d_as_conv,
    se_hardsigmoid_into_conv,
    silu_as_sigmoid_mul,
)
from pocketvit.export.rewrites_coreml import addcmul_as_mul_add
from pocketvit.export.rewrites_litert import (
    cascaded_attention_transposed_matmul,
    depthwise7_as_5x5,
    layernorm_keepdim,
    linear_attention_broadcast,
    maxpool_edge_pad,
    nearest_resize_as_gather,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch


def qkv_bias_into_linear(model: torch.nn.Module) -> int:
    """timm EVA / BEiT attention keeps q, k (zeros) and v biases apart and concatenates them on every call into
    `F.linear(x, qkv.weight, bias=cat(...))`; the concatenation is moved into the qkv layer's own bias once (the
    same arithmetic). With a bias computed at run time XNNPACK does not take the int8 linear: its weight's
    per-channel dequantize stayed outside the delegate, and ExecuTorch has no kernel for it ("Missing out
    variants: {'quantized_decomposed::dequantize_per_channel'}": EVA-02 int8)."""
    import torch
    from torch import nn

    def match(m: nn.Module) -> bool:
        return (type(m).__module__.startswith("timm.") and isinstance(getattr(m, "qkv", None), nn.Linear)
                and m.qkv.bias is None and all(isinstance(getattr(m, f"{p}_bias", None), torch.Tensor) for p in "qkv")
                and not getattr(m, "qkv_bias_separate", False))

    def fold(m: nn.Module) -> nn.Module:
        with torch.no_grad():
            bias = torch.cat((m.q_bias, m.k_bias, m.v_bias)).detach().clone()
        m.qkv.bias = nn.Parameter(bias, requires_grad=False)
        m.q_bias = m.k_bias = m.v_bias = None  # timm's forward then calls self.qkv(x)
        return m

    return replace_modules(model, match, fold)


def _layernorm_as_linear(model: torch.nn.Module) -> int:
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
            return two_pass_norm(x, lambda t: F.linear(t, self.avg), self.eps, self.weight, self.bias)

    plain = {nn.LayerNorm}
    try:  # timm's LayerNorm only adds a fast-norm switch; its channels-first LayerNorm2d is not matched
        from timm.layers import LayerNorm as TimmLayerNorm

        plain.add(TimmLayerNorm)
    except ImportError:
        pass
    # Not timm's channels-first LayerNorm2d (ConvNeXt): written the same way between two permutes it took
    # ConvNeXt-atto from 19 delegate calls to 1 but ran slower (1.88x vs 1.60x ONNX Runtime, bench-zoo).
    return replace_modules(model, lambda m: type(m) in plain and len(m.normalized_shape) == 1, LinearLayerNorm)


def _timm_attention_as_bmm(model: torch.nn.Module) -> int:
    """timm's ViT Attention with heads folded into the batch: 3-D bmm instead of 4-D matmul, whose
    decomposition leaves expand_copy / squeeze_copy nodes outside XNNPACK (2 per matmul)."""
    try:
        from timm.layers.attention import Attention
    except ImportError:
        return 0
    from torch import nn

    class BmmAttention(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner
            self.q, self.k, self.v = _split_qkv(inner.qkv)

        def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
            a = self.inner
            if attn_mask is not None or is_causal:
                return a(x, attn_mask=attn_mask, is_causal=is_causal)
            b, n, _ = x.shape
            h, d = a.num_heads, a.head_dim
            gate = a.gate(x).sigmoid() if getattr(a, "gate", None) is not None else None
            q, k, v = (p(x).reshape(b, n, h, d).transpose(1, 2) for p in (self.q, self.k, self.v))
            x = _folded_attention(a.q_norm(q) * a.scale, a.k_norm(k), v, a.attn_drop)
            x = a.norm(x)
            if gate is not None:
                x = x * gate
            return a.proj_drop(a.proj(x))

    needed = ("qkv", "num_heads", "head_dim", "scale", "q_norm", "k_norm", "norm", "proj", "attn_drop", "proj_drop")
    count = replace_modules(model, lambda m: type(m) is Attention and all(hasattr(m, a) for a in needed), BmmAttention)
    return count + _timm_tinyvit_attention_as_bmm(model) + _timm_fastvit_attention_as_bmm(model)


def _timm_fastvit_attention_as_bmm(model: torch.nn.Module) -> int:
    """timm FastViT / MobileCLIP MCi attention (on a (B, C, H, W) map): q/k/v as three linears and the heads
    folded into the batch of 3-D bmm, as for ViT attention (its 4-D matmuls left expand/squeeze copies out)."""
    try:
        from timm.models.fastvit import Attention
    except ImportError:
        return 0
    from torch import nn

    class BmmMapAttention(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner
            self.q, self.k, self.v = _split_qkv(inner.qkv)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = self.inner
            b, c, h, w = x.shape
            n, heads, d = h * w, a.num_heads, a.head_dim
            t = x.flatten(2).transpose(1, 2)  # (B, N, C)
            q, k, v = (p(t).reshape(b, n, heads, d).transpose(1, 2) for p in (self.q, self.k, self.v))
            out = _folded_attention(q * a.scale, k, v, a.attn_drop)
            return a.proj_drop(a.proj(out)).transpose(1, 2).reshape(b, c, h, w)

    needed = ("qkv", "num_heads", "head_dim", "scale", "proj", "attn_drop", "proj_drop")
    return replace_modules(model, lambda m: type(m) is Attention and all(hasattr(m, a) for a in needed), BmmMapAttention)


def _vit_prefix_tokens(model: torch.nn.Module) -> int:
    """timm VisionTransformer at batch 1: the class/register tokens concatenated as they are (no
    expand_copy) and token pooling as slice + reshape (no select_copy); XNNPACK takes neither expand
    nor select, which left DeiT in 2 delegate calls. Other batch sizes run timm's own code."""
    try:
        from timm.models.vision_transformer import VisionTransformer
    except ImportError:
        return 0
    import types

    import torch

    def pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != 1 or self.dynamic_img_size or self.pos_embed is None:
            return VisionTransformer._pos_embed(self, x)
        prefix = [t for t in (self.cls_token, self.reg_token) if t is not None]  # each (1, n, C) already
        if self.no_embed_class:
            x = x + self.pos_embed
            return self.pos_drop(torch.cat([*prefix, x], dim=1) if prefix else x)
        x = torch.cat([*prefix, x], dim=1) if prefix else x
        return self.pos_drop(x + self.pos_embed)

    def pool(self, x: torch.Tensor, pool_type: str | None = None) -> torch.Tensor:
        if self.attn_pool is None and (self.global_pool if pool_type is None else pool_type) == "token":
            return x[:, :1].reshape(x.shape[0], x.shape[-1])
        return VisionTransformer.pool(self, x, pool_type)

    count = 0
    for m in model.modules():
        if isinstance(m, VisionTransformer) and getattr(m, "cls_token", None) is not None and hasattr(m, "pool"):
            m._pos_embed = types.MethodType(pos_embed, m)
            m.pool = types.MethodType(pool, m)
            count += 1
    return count


def _split_qkv(qkv: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """q, k and v as three linears (row slices of a fused qkv): unbinding one fused output costs 3 squeeze_copy."""
    import torch

    dim = qkv.out_features // 3
    return tuple(_split_linear(qkv, torch.arange(i * dim, (i + 1) * dim)) for i in range(3))


def _folded_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_drop) -> torch.Tensor:
    """softmax(q k^T) v for (B, H, N, D) q (already scaled), k, v with the heads folded into the batch of
    3-D bmm (the 4-D matmul's decomposition leaves expand/squeeze copies outside XNNPACK); (B, N, H * D)."""
    import torch

    b, h, n, d = q.shape
    q, k, v = (t.reshape(b * h, n, d) for t in (q, k, v))
    attn = torch.bmm(q, k.transpose(1, 2)).softmax(-1)
    return torch.bmm(attn_drop(attn), v).reshape(b, h, n, d).transpose(1, 2).reshape(b, n, h * d)


def _split_linear(lin: torch.nn.Module, rows: torch.Tensor) -> torch.nn.Module:
    """A new Linear made of the given output rows of `lin` (same numbers, row by row)."""
    from torch import nn

    out = nn.Linear(lin.in_features, len(rows), bias=lin.bias is not None)
    out.weight.data.copy_(lin.weight.detach()[rows])
    if lin.bias is not None:
        out.bias.data.copy_(lin.bias.detach()[rows])
    return out


def _timm_tinyvit_attention_as_bmm(model: torch.nn.Module) -> int:
    """timm TinyViT's windowed attention: q/k/v as three linears (no split_with_sizes), the relative
    position bias gathered once into a constant (no index.Tensor per call), 3-D bmm (no expand copies)."""
    try:
        from timm.models.tiny_vit import Attention
    except ImportError:
        return 0
    import torch
    from torch import nn

    class BmmTinyViTAttention(nn.Module):
        def __init__(self, a: nn.Module):
            super().__init__()
            h, kd, vd = a.num_heads, a.key_dim, a.val_dim
            per_head = torch.arange(h)[:, None] * (2 * kd + vd)
            rows = [(per_head + torch.arange(lo, hi)[None]).reshape(-1) for lo, hi in
                    ((0, kd), (kd, 2 * kd), (2 * kd, 2 * kd + vd))]
            self.q, self.k, self.v = (_split_linear(a.qkv, r) for r in rows)
            self.norm, self.proj = a.norm, a.proj
            self.heads, self.key_dim, self.val_dim, self.scale = h, kd, vd, a.scale
            with torch.no_grad():
                self.register_buffer("bias", a.attention_biases[:, a.attention_bias_idxs].detach().clone())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, n, _ = x.shape
            h = self.heads
            x = self.norm(x)
            q, k, v = (p(x).reshape(b, n, h, -1).transpose(1, 2).reshape(b * h, n, -1) for p in (self.q, self.k, self.v))
            attn = torch.bmm(q * self.scale, k.transpose(1, 2)).reshape(b, h, n, n) + self.bias
            attn = attn.softmax(-1).reshape(b * h, n, n)
            x = torch.bmm(attn, v).reshape(b, h, n, self.val_dim).transpose(1, 2).reshape(b, n, h * self.val_dim)
            return self.proj(x)

    return replace_modules(model, lambda m: type(m) is Attention and not m.training, BmmTinyViTAttention)


@dataclass(frozen=True)
class Rewrite:
    name: str
    doc: str
    targets: tuple[str, ...]  # "executorch-int8" / "litert-int8": also before PT2E int8 (only those measured there)
    apply: Callable[[torch.nn.Module], int]


REWRITES: tuple[Rewrite, ...] = (
    Rewrite("layernorm-as-linear", "LayerNorm's mean and variance as linear layers the delegate takes",
            ("executorch", "executorch-int8"), _layernorm_as_linear),
    Rewrite("attention-as-bmm", "timm ViT and TinyViT attention as 3-D batched matmuls, q/k/v as three linears",
            ("executorch", "executorch-int8"), _timm_attention_as_bmm),
    Rewrite("prefix-tokens", "timm ViT class token concatenated without expand, token pooling as a slice (batch 1)",
            ("executorch", "executorch-int8"), _vit_prefix_tokens),
    Rewrite("qkv-bias-into-linear", "EVA / BEiT attention's q/k/v biases concatenated once into the qkv linear's "
            "bias: XNNPACK takes no int8 linear whose bias is computed at run time", ("executorch-int8",),
            qkv_bias_into_linear),
    Rewrite("layernorm2d-as-conv", "channels-first LayerNorm2d statistics as 1x1 convs (no permutes, no layer norm)",
            ("executorch", "executorch-int8"), layernorm2d_as_conv),
    Rewrite("se-gate-into-conv", "squeeze-excite hardsigmoid gate folded into its conv, a clamp XNNPACK fuses",
            ("executorch",), se_hardsigmoid_into_conv),
    Rewrite("hardsigmoid-as-hardtanh", "hardsigmoid as hardtanh(x + 3.0, 0, 6) / 6.0 (no int64 scalar copies)",
            ("executorch-int8",), hardsigmoid_as_hardtanh),  # fp32: slower at 2 threads (bench-zoo, README)
    Rewrite("silu-as-sigmoid-mul", "SiLU as x * sigmoid(x): int8 sigmoid and multiply instead of a float SiLU",
            ("executorch-int8",), silu_as_sigmoid_mul),
    Rewrite("layernorm-keepdim", "LayerNorm / LayerNorm2d statistics with keepdim: no rank-1 detour and RESHAPEs",
            ("litert",), layernorm_keepdim),
    Rewrite("maxpool-edge-pad", "max-pool padding as edge-replicating concats (exact; XNNPACK skips the -inf PADV2)",
            ("litert", "litert-int8"), maxpool_edge_pad),
    Rewrite("linear-attention-broadcast", "MobileViTv2 linear attention's multiplies broadcast implicitly (no "
            "expand_as): litert-torch fails to convert the mixed form (tfl.mul broadcast)",
            ("litert", "litert-int8"), linear_attention_broadcast),
    Rewrite("nearest-resize-as-gather", "GhostNetV2's nearest upsampling of its attention gate as two index "
            "selects: LiteRT's RESIZE_NEAREST_NEIGHBOR picks other pixels at non-integer scales (7 x 7 maps)",
            ("litert", "litert-int8"), nearest_resize_as_gather),
    Rewrite("cascaded-attention-transposed-matmul", "EfficientViT-M attention's value product as (attn @ v^T)^T: "
            "litert-torch's int8 conversion folds the reshape after v @ attn^T into a rank-4 batch matmul",
            ("litert-int8",), cascaded_attention_transposed_matmul),
    Rewrite("hardswish-as-hardtanh-mul", "hardswish as x * hardtanh(x + 3, 0, 6) / 6: XNNPACK takes no int8 HARD_SWISH",
            ("litert-int8",), hardswish_as_hardtanh_mul),
    Rewrite("depthwise7-as-core-ring", "stride-1 7x7 depthwise conv as a 5x5 core + two dilated border convs (49 taps)",
            ("litert", "executorch", "executorch-int8"), depthwise7_as_core_ring),
    Rewrite("addcmul-as-mul-add", "addcmul (ConvNeXtV2's GRN, ResMLP's Affine) as a multiply and an add: "
            "coremltools has no addcmul", ("coreml", "coreml-int8"), addcmul_as_mul_add),
    Rewrite("depthwise7-as-5x5", "stride-1 7x7 depthwise conv as four 5x5 ones (XNNPACK's 49-tap kernel is slow)",
            ("litert", "executorch", "executorch-int8"), depthwise7_as_5x5),
)


def rewrite_names() -> list[str]:
    return [r.name for r in REWRITES]


def check_rewrite_names(disabled: Iterable[str]) -> set[str]:
    """The set of names, or ExportError naming the unknown ones and listing the known."""
    from pocketvit.errors import ExportError

    disabled = set(disabled)
    unknown = disabled - set(rewrite_names()) - {"all"}
    if unknown:
        raise ExportError(f"unknown rewrite(s) {sorted(unknown)}; known: {', '.join(rewrite_names())} (or all)")
    return disabled


def apply_rewrites(model: torch.nn.Module, target: str, disabled: Iterable[str] = ()) -> dict[str, int]:
    """Apply every rewrite meant for `target` that is not disabled ("all" disables every one)."""
    disabled = check_rewrite_names(disabled)
    applied = {}
    for r in REWRITES:
        if target in r.targets and r.name not in disabled and "all" not in disabled:
            n = r.apply(model)
            if n:
                applied[r.name] = n
    return applied
