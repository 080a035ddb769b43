"""A TinyViT-style student for small inputs (conv stem, MBConv stage, attention stages).

Follows TinyViT's shape (METHODS.md): conv stem and MBConv blocks first, patch merging between
stages, attention blocks with a depthwise conv between attention and MLP. Attention is written as
matmul + softmax with a learned per-head bias, so exporters see plain ops the delegates take.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


def conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout))


class MBConv(nn.Module):
    def __init__(self, dim: int, expand: int = 4):
        super().__init__()
        hidden = dim * expand
        self.pw1 = conv_bn(dim, hidden)
        self.dw = conv_bn(hidden, hidden, 3, groups=hidden)
        self.pw2 = conv_bn(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.pw2(self.act(self.dw(self.act(self.pw1(x))))))


class PatchMerging(nn.Module):
    """1x1 conv, stride-2 depthwise conv, 1x1 conv: halves the map, changes the width."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(cin, cout), nn.GELU(), conv_bn(cout, cout, 3, 2, groups=cout), nn.GELU(), conv_bn(cout, cout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Attention(nn.Module):
    """Separate q/k/v projections and 3-D batched matmuls (heads folded into the batch): no select or
    expand copies, so the XNNPACK delegate takes the whole block."""

    def __init__(self, dim: int, heads: int, tokens: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim**-0.5
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.bias = nn.Parameter(torch.zeros(heads, tokens, tokens))

    def _heads(self, t: torch.Tensor, b: int, n: int) -> torch.Tensor:
        return t.reshape(b, n, self.heads, self.head_dim).transpose(1, 2).reshape(b * self.heads, n, self.head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = (self._heads(p(x), b, n) for p in (self.q, self.k, self.v))
        attn = torch.bmm(q * self.scale, k.transpose(1, 2)).reshape(b, self.heads, n, n) + self.bias
        attn = attn.softmax(-1).reshape(b * self.heads, n, n)
        x = torch.bmm(attn, v).reshape(b, self.heads, n, self.head_dim).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class TinyViTBlock(nn.Module):
    """Attention over the whole (small) map, a local depthwise conv, then an MLP."""

    def __init__(self, dim: int, heads: int, side: int, mlp_ratio: float):
        super().__init__()
        self.side = side
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, side * side)
        self.local = conv_bn(dim, dim, 3, groups=dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        x = x + self.attn(self.norm1(x))
        m = x.transpose(1, 2).reshape(b, c, self.side, self.side)
        x = x + self.local(m).flatten(2).transpose(1, 2)
        return x + self.mlp(self.norm2(x))


@dataclass
class TinyViTConfig:
    in_chans: int = 1
    num_classes: int = 10
    img_size: int = 28
    stem_dim: int = 32
    mbconv_depth: int = 1
    dims: list[int] = field(default_factory=lambda: [64])  # one attention stage per entry
    depths: list[int] = field(default_factory=lambda: [2])
    heads: list[int] = field(default_factory=lambda: [2])
    mlp_ratio: float = 3.0
    dropout: float = 0.0
    embed_norm: bool = False  # CLIP-style image tower: the head outputs an L2-normalised embedding of num_classes values


class TinyViTStudent(nn.Module):
    def __init__(self, cfg: TinyViTConfig):
        super().__init__()
        self.cfg = cfg
        self.stem = nn.Sequential(conv_bn(cfg.in_chans, cfg.stem_dim, 3, 2), nn.GELU())
        self.mbconv = nn.Sequential(*[MBConv(cfg.stem_dim) for _ in range(cfg.mbconv_depth)])
        side = (cfg.img_size + 1) // 2
        stages, cin = [], cfg.stem_dim
        for dim, depth, heads in zip(cfg.dims, cfg.depths, cfg.heads):
            side = (side + 1) // 2
            blocks = [TinyViTBlock(dim, heads, side, cfg.mlp_ratio) for _ in range(depth)]
            stages.append(nn.ModuleDict({"merge": PatchMerging(cin, dim), "blocks": nn.Sequential(*blocks)}))
            cin = dim
        self.stages = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(cin)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cin, cfg.num_classes)

    def _stage_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """A stage's output tokens; the training-time form (models/train_forms.py) hooks in here."""
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mbconv(self.stem(x))
        for stage in self.stages:
            x = stage["merge"](x)
            b, c, h, w = x.shape
            x = self._stage_tokens(stage["blocks"](x.flatten(2).transpose(1, 2)))
            x = x.transpose(1, 2).reshape(b, c, h, w)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # keepdim mean = global average pooling, which XNNPACK takes; a plain mean.dim splits the delegate
        x = self.forward_features(x).mean((2, 3), keepdim=True).flatten(1)
        x = self.head(self.drop(self.norm(x)))
        if self.cfg.embed_norm:  # rsqrt of a keepdim sum: plain ops every exporter takes
            x = x * torch.rsqrt((x * x).sum(-1, keepdim=True) + 1e-12)
        return x
