"""Training-time forms of models: the same parameters and the same function, cheaper to train on CPU.

`training_form(model)` swaps the class of each submodule that has a training form for that form (a subclass
that changes how the step runs, not what it computes) and restores the original classes on exit, also when the
block raises. State-dict keys, parameters and buffers are untouched, so checkpoints, optimizers and DDP see the
same module; nothing outside the context ever sees a training form, so exported graphs are the plain model's.

TinyViT student: mean pooling's backward hands the token stream an expanded (stride-0) gradient; the residual
adds pass it on and BatchNorm / conv backward inside the attention blocks then run on NCHW-strided gradients
against channels-last inputs (their slow mixed-layout paths, plus copies). The form makes each stage's output
gradient contiguous once (an identity in the forward; in the backward one copy of (B, N, C)), so every
backward op downstream sees the layout its input has. Measured: README "Faster training steps on CPU".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from pocketvit.models.tinyvit import TinyViTStudent


class ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous (row-major tokens)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


class TinyViTTrainForm(TinyViTStudent):
    """TinyViTStudent with a contiguous gradient on each stage's output tokens (same forward values, bit for bit)."""

    def _stage_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return ContiguousGrad.apply(x) if torch.is_grad_enabled() and x.requires_grad else x


TRAIN_FORMS: dict[type[nn.Module], type[nn.Module]] = {TinyViTStudent: TinyViTTrainForm}


@contextmanager
def training_form(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Within the block, `model`'s submodules with a training form run as that form; `enabled=False` changes
    nothing (the recipe's `distill.fast_train: false`)."""
    swapped = []
    if enabled:
        for m in model.modules():
            form = TRAIN_FORMS.get(type(m))
            if form is not None:
                swapped.append((m, type(m)))
                m.__class__ = form
    try:
        yield model
    finally:
        for m, cls in reversed(swapped):
            m.__class__ = cls
