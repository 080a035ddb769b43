"""EarlyExitModel: a student backbone run block by block, with LGViT exit heads after chosen blocks.

Backbones: the TinyViT-style student (models/tinyvit.py) and timm's VisionTransformer (ViT / DeiT).
The wrapper holds the student as `backbone.model`, so the student's own state_dict is unchanged and
`student_state_dict()` gives exactly the keys the plain student has.

`segments()` cuts the model for export: segment i < E runs the blocks up to exit i and returns
(state, exit-i logits); the last segment runs the remaining blocks and the final head. The runtime
(pocketvit.runtime.predictor) chains them: segment i > 0 takes the state of segment i - 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pocketvit.errors import RecipeError
from pocketvit.exits.heads import make_head


def _tokens_to_map(t: torch.Tensor, side: int) -> torch.Tensor:
    b, _, c = t.shape
    return t.transpose(1, 2).reshape(b, c, side, side)


class TinyViTBackbone(nn.Module):
    """Runs TinyViTStudent's attention blocks one by one (stem + MBConv before the first; patch merging
    before the first block of each stage), with the same ops as its forward."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.units: list[tuple[int, int]] = []
        self.sides: list[int] = []
        self.dims: list[int] = []
        side = (model.cfg.img_size + 1) // 2
        for si, (stage, dim) in enumerate(zip(model.stages, model.cfg.dims)):
            side = (side + 1) // 2
            for bi in range(len(stage["blocks"])):
                self.units.append((si, bi))
                self.sides.append(side)
                self.dims.append(dim)
        self.heads_hint = max(model.cfg.heads) if model.cfg.heads else 2

    @property
    def num_blocks(self) -> int:
        return len(self.units)

    def token_shape(self, after: int) -> tuple[int, int]:
        """(channels, side) of the token map after `after` blocks (1-based)."""
        return self.dims[after - 1], self.sides[after - 1]

    def run(self, x: torch.Tensor, start: int, end: int) -> torch.Tensor:
        m = self.model
        if start == 0:
            x = m.mbconv(m.stem(x))
        for j in range(start, end):
            si, bi = self.units[j]
            stage = m.stages[si]
            if bi == 0:
                if j > 0:
                    x = _tokens_to_map(x, self.sides[j - 1])
                x = stage["merge"](x).flatten(2).transpose(1, 2)
            x = stage["blocks"][bi](x)
        return x

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = _tokens_to_map(x, self.sides[-1]).mean((2, 3), keepdim=True).flatten(1)
        return m.head(m.drop(m.norm(x)))


class TimmViTBackbone(nn.Module):
    """timm VisionTransformer (ViT, DeiT): patch embedding + position embedding, blocks, norm, head."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        grid = tuple(model.patch_embed.grid_size)
        if grid[0] != grid[1]:
            raise RecipeError(f"early exits need a square patch grid, this ViT has {grid}")
        self.side = grid[0]
        self.prefix = int(getattr(model, "num_prefix_tokens", 1))
        self.dim = int(model.embed_dim)
        self.heads_hint = int(getattr(model.blocks[0].attn, "num_heads", 2))

    @property
    def num_blocks(self) -> int:
        return len(self.model.blocks)

    def token_shape(self, after: int) -> tuple[int, int]:
        return self.dim, self.side

    def run(self, x: torch.Tensor, start: int, end: int) -> torch.Tensor:
        m = self.model
        if start == 0:
            x = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(x))))
        for j in range(start, end):
            x = m.blocks[j](x)
        return x

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.prefix :]

    def head(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        return m.forward_head(m.norm(x))


def make_backbone(model: nn.Module) -> nn.Module:
    from pocketvit.models.tinyvit import TinyViTStudent

    if isinstance(model, TinyViTStudent):
        return TinyViTBackbone(model)
    try:
        from timm.models.vision_transformer import VisionTransformer
    except ImportError:  # pragma: no cover
        VisionTransformer = ()
    if VisionTransformer and isinstance(model, VisionTransformer):
        return TimmViTBackbone(model)
    raise RecipeError(
        f"early exits support the pocketvit-tinyvit student and timm ViT/DeiT students, not {type(model).__name__}; "
        "remove the recipe's exits section or change student.arch"
    )


def resolve_heads(kinds: str | list[str], after_blocks: list[int], num_blocks: int) -> list[str]:
    """'auto': local perception for exits in the first half of the blocks, global aggregation after."""
    if kinds == "auto":
        return ["local" if k <= num_blocks // 2 else "global" for k in after_blocks]
    if len(kinds) != len(after_blocks):
        raise RecipeError(f"exits.heads lists {len(kinds)} kinds for {len(after_blocks)} exits; give one per exit or 'auto'")
    return list(kinds)


def check_after_blocks(after_blocks: list[int], num_blocks: int) -> list[int]:
    bad = [k for k in after_blocks if not 1 <= k < num_blocks]
    if bad or sorted(set(after_blocks)) != list(after_blocks) or not after_blocks:
        raise RecipeError(
            f"exits.after_blocks {after_blocks}: give increasing block counts between 1 and {num_blocks - 1} "
            f"(the student has {num_blocks} blocks; the final head is always the last exit)"
        )
    return list(after_blocks)


class EarlyExitModel(nn.Module):
    """forward(x) -> [exit_1 logits, ..., exit_E logits, final logits] (final = the student's own head)."""

    def __init__(self, student: nn.Module, after_blocks: list[int], heads: str | list[str], num_classes: int):
        super().__init__()
        self.backbone = make_backbone(student)
        nb = self.backbone.num_blocks
        self.after_blocks = check_after_blocks(list(after_blocks), nb)
        self.head_kinds = resolve_heads(heads, self.after_blocks, nb)
        self.heads = nn.ModuleList(
            make_head(kind, *self.backbone.token_shape(k), num_classes, heads=self.backbone.heads_hint)
            for kind, k in zip(self.head_kinds, self.after_blocks)
        )
        self.frozen_backbone = False

    @property
    def num_exits(self) -> int:
        return len(self.after_blocks)

    def student(self) -> nn.Module:
        return self.backbone.model

    def freeze_backbone(self) -> None:
        """Stage 2: only the exit heads learn; the backbone (BatchNorm statistics included) stays fixed."""
        self.frozen_backbone = True
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.backbone.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_backbone:
            self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs, start = [], 0
        for k, head in zip(self.after_blocks, self.heads):
            x = self.backbone.run(x, start, k)
            outs.append(head(self.backbone.patch_tokens(x)))
            start = k
        x = self.backbone.run(x, start, self.backbone.num_blocks)
        outs.append(self.backbone.head(x))
        return outs

    def segments(self) -> list[nn.Module]:
        """One module per segment (see the module docstring)."""
        bounds = [0, *self.after_blocks, self.backbone.num_blocks]
        segs: list[nn.Module] = []
        for i in range(self.num_exits + 1):
            head = self.heads[i] if i < self.num_exits else None
            segs.append(Segment(self.backbone, bounds[i], bounds[i + 1], head))
        return segs


class Segment(nn.Module):
    """Blocks [start, end) and, for an exit segment, (state, exit logits); the last segment: final logits."""

    def __init__(self, backbone: nn.Module, start: int, end: int, head: nn.Module | None):
        super().__init__()
        self.backbone, self.start, self.end, self.exit_head = backbone, start, end, head

    def forward(self, x: torch.Tensor):
        x = self.backbone.run(x, self.start, self.end)
        if self.exit_head is None:
            return self.backbone.head(x)
        return x, self.exit_head(self.backbone.patch_tokens(x))


@dataclass
class ExitSpec:
    """What the bundle manifest and the report say about one exit."""

    name: str
    after_block: int
    head: str
    method: str


def exit_specs(model: EarlyExitModel) -> list[ExitSpec]:
    specs = [ExitSpec(f"exit{i + 1}", k, kind, f"seg{i}")
             for i, (k, kind) in enumerate(zip(model.after_blocks, model.head_kinds))]
    specs.append(ExitSpec("final", model.backbone.num_blocks, "final", f"seg{model.num_exits}"))
    return specs


@torch.no_grad()
def segment_examples(model: EarlyExitModel, example: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """The example inputs of each segment (segment i > 0 takes segment i - 1's state)."""
    model.eval()
    examples, x = [], example
    for seg in model.segments():
        # contiguous: a transposed view here would make torch.export record a strided (permuted dim
        # order) input, which XNNPACK then refuses at run time ("Propagating input shapes failed")
        x = x.contiguous()
        examples.append((x,))
        out = seg(x)
        if isinstance(out, tuple):
            x = out[0]
    return examples
