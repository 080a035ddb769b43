"""LGViT exit heads (METHODS.md): local perception for shallow exits, global aggregation for deep ones.

Both take the backbone's patch tokens (B, N, C) of a side x side map and return class logits. They are
written with plain ops (convolutions, bmm, softmax, keepdim means) so every exporter and delegate takes
them whole.
"""

from __future__ import annotations

import torch
from torch import nn

HEAD_KINDS = ("local", "global")


def _tokens_to_map(t: torch.Tensor, side: int) -> torch.Tensor:
    b, _, c = t.shape
    return t.transpose(1, 2).reshape(b, c, side, side)


class LocalPerceptionHead(nn.Module):
    """Depthwise 3x3 + pointwise conv over the token map (local features a shallow exit lacks), then
    global average pooling, LayerNorm and a linear classifier."""

    def __init__(self, dim: int, side: int, num_classes: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or dim
        self.side = side
        self.dw = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1, groups=dim, bias=False), nn.BatchNorm2d(dim))
        self.pw = nn.Sequential(nn.Conv2d(dim, hidden, 1, bias=False), nn.BatchNorm2d(hidden))
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(hidden)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        m = _tokens_to_map(tokens, self.side)
        m = self.act(self.pw(self.act(m + self.dw(m))))
        return self.fc(self.norm(m.mean((2, 3), keepdim=True).flatten(1)))


class GlobalAggregationHead(nn.Module):
    """A global query (mean token) attends over spatially reduced tokens (strided depthwise conv, as in
    PVT's spatial reduction), then LayerNorm and a linear classifier."""

    def __init__(self, dim: int, side: int, num_classes: int, heads: int = 2, reduce: int = 2):
        super().__init__()
        self.side, self.heads, self.head_dim = side, heads, dim // heads
        self.scale = self.head_dim**-0.5
        reduce = max(1, min(reduce, side))
        self.sr = nn.Sequential(nn.Conv2d(dim, dim, reduce, reduce, groups=dim, bias=False), nn.BatchNorm2d(dim))
        self.kv_norm = nn.LayerNorm(dim)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def _heads(self, t: torch.Tensor, b: int, n: int) -> torch.Tensor:
        return t.reshape(b, n, self.heads, self.head_dim).transpose(1, 2).reshape(b * self.heads, n, self.head_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, _, c = tokens.shape
        m = _tokens_to_map(tokens, self.side)
        query = m.mean((2, 3), keepdim=True).flatten(2).transpose(1, 2)  # (B, 1, C) global token
        kv = self.kv_norm(self.sr(m).flatten(2).transpose(1, 2))  # (B, M, C) reduced tokens
        n = kv.shape[1]
        q = self._heads(self.q(query), b, 1)
        k, v = self._heads(self.k(kv), b, n), self._heads(self.v(kv), b, n)
        attn = torch.bmm(q * self.scale, k.transpose(1, 2)).softmax(-1)
        out = torch.bmm(attn, v).reshape(b, self.heads, 1, self.head_dim).transpose(1, 2).reshape(b, 1, c)
        x = query + self.proj(out)
        return self.fc(self.norm(x.flatten(1)))


def make_head(kind: str, dim: int, side: int, num_classes: int, heads: int = 2) -> nn.Module:
    if kind == "local":
        return LocalPerceptionHead(dim, side, num_classes)
    if kind == "global":
        return GlobalAggregationHead(dim, side, num_classes, heads=heads)
    raise ValueError(f"unknown exit head kind {kind!r}; use one of {', '.join(HEAD_KINDS)}")
