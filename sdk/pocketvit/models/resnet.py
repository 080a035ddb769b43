"""A small ResNet for small images: the default Fashion-MNIST teacher (trained from scratch)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.short is None else self.short(x)))


@dataclass
class ResNetConfig:
    in_chans: int = 1
    num_classes: int = 10
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    depths: list[int] = field(default_factory=lambda: [1, 1, 1])
    dropout: float = 0.1


class SmallResNet(nn.Module):
    """Stem at full resolution, then one stage per width; every stage after the first halves the map."""

    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        self.cfg = cfg
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_chans, cfg.widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(cfg.widths[0]), nn.ReLU()
        )
        blocks, cin = [], cfg.widths[0]
        for i, (w, d) in enumerate(zip(cfg.widths, cfg.depths)):
            for j in range(d):
                blocks.append(BasicBlock(cin, w, 2 if (i > 0 and j == 0) else 1))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cin, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.head(self.drop(x.mean((2, 3), keepdim=True).flatten(1)))
