"""Target-neutral preparation shared by every exporter.

`prepare_for_export` turns a training-form module into its inference form without touching the
caller's module: a deep copy, `eval()`, re-parameterisation of RepVGG/MobileOne/FastViT/RepViT style
branches (timm's `reparameterize_model` when timm is importable, the same walk otherwise) and, where it
helps a delegate, timm's non-fused attention path (matmul + softmax instead of
`scaled_dot_product_attention`, whose decomposition ExecuTorch's XNNPACK partitioner leaves outside
the delegate; see TOOLCHAINS.md).

`recalibrate_batchnorm` re-estimates BatchNorm running statistics on random inputs. A randomly
initialised model keeps the default statistics (mean 0, var 1) and its activations shrink layer by
layer until they are denormal numbers: outputs become meaningless for parity checks and some CPUs slow
down a hundredfold. Useful for tests and for users with random-init models.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _deepcopy_or_same(obj):
    try:
        return copy.deepcopy(obj), True
    except Exception as exc:  # some modules (hooks holding lambdas, C++ handles) cannot be copied
        warnings.warn(
            f"Could not copy the model before export ({type(exc).__name__}: {exc}); "
            "it is prepared in place (eval mode, re-parameterised).",
            stacklevel=3,
        )
        return obj, False


def reparameterize(model: torch.nn.Module) -> torch.nn.Module:
    """Fuse re-parameterisable branches in place (module.fuse() / reparameterize() / switch_to_deploy()).

    Returns the model (a child with `fuse()` is replaced by what `fuse()` returns).
    """
    try:
        from timm.utils.model import reparameterize_model
    except ImportError:
        reparameterize_model = None

    def _apply(m):
        if hasattr(m, "reparameterize") and callable(m.reparameterize):
            m.reparameterize()
            return True
        if hasattr(m, "switch_to_deploy") and callable(m.switch_to_deploy):
            m.switch_to_deploy()
            return True
        return False

    # The root itself (timm's walk only visits children).
    if not (hasattr(model, "fuse") and callable(model.fuse)):
        _apply(model)

    if reparameterize_model is not None:
        return reparameterize_model(model, inplace=True)

    def _walk(parent):
        for name, child in parent.named_children():
            if hasattr(child, "fuse") and callable(child.fuse):
                setattr(parent, name, child.fuse())
            else:
                _apply(child)
            _walk(getattr(parent, name))

    _walk(model)
    return model


def unfuse_attention(model: torch.nn.Module) -> int:
    """Switch timm attention modules to their explicit matmul + softmax path. Returns how many changed.

    timm reads `use_fused_attn()` once, when a module is built, into `module.fused_attn`; flipping the
    global flag later changes nothing, so the instances are switched here.
    """
    changed = 0
    for m in model.modules():
        if isinstance(getattr(m, "fused_attn", None), bool) and m.fused_attn:
            try:
                m.fused_attn = False
            except (AttributeError, TypeError, RuntimeError):  # a read-only / scripted attribute: leave it
                continue
            changed += 1
    return changed


@contextlib.contextmanager
def fused_attn_disabled() -> Iterator[None]:
    """Within the block, timm models *built* there use the non-fused attention path; restored after."""
    try:
        from timm.layers import config as timm_config
    except ImportError:
        yield
        return
    old = getattr(timm_config, "_USE_FUSED_ATTN", None)
    timm_config.set_fused_attn(False)
    try:
        yield
    finally:
        if old is not None:
            timm_config._USE_FUSED_ATTN = old


def prepare_for_export(
    model: torch.nn.Module,
    *,
    unfused_attention: bool = False,
    copy_model: bool = True,
) -> torch.nn.Module:
    """A CPU, eval-mode, re-parameterised copy of `model` ready for tracing. The caller's model is untouched.

    unfused_attention: switch timm attention to matmul + softmax (helps ExecuTorch's XNNPACK delegate).
    """
    if copy_model:
        model, _ = _deepcopy_or_same(model)
    return _prepare_in_place(model, unfused_attention=unfused_attention)


def prepare_many(
    models: Sequence[torch.nn.Module], *, unfused_attention: bool = False
) -> list[torch.nn.Module]:
    """Prepare several modules with one deep copy, so parameters they share stay shared."""
    copied, _ = _deepcopy_or_same(list(models))
    return [_prepare_in_place(m, unfused_attention=unfused_attention) for m in copied]


def _prepare_in_place(model, *, unfused_attention: bool):
    model = model.cpu().eval()
    model = reparameterize(model)
    model.eval()
    if unfused_attention:
        unfuse_attention(model)
    return model


def recalibrate_batchnorm(
    model: torch.nn.Module,
    shape: Sequence[int],
    batches: int = 4,
    *,
    seed: int = 0,
) -> torch.nn.Module:
    """Re-estimate every BatchNorm's running mean/var on `batches` random normal inputs of `shape`.

    `shape` is the full input shape including the batch dimension (use a batch of 2 or more, e.g.
    (8, 3, 64, 64)). Statistics are the exact average over the batches (momentum None while running).
    Only the BatchNorm layers run in training mode; dropout and the rest stay as they were. The model
    is changed in place and returned, with every module's train/eval flag restored.
    """
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not bns:
        return model
    if shape[0] < 2:
        raise ValueError(f"recalibrate_batchnorm needs a batch of 2 or more, got shape {tuple(shape)}")
    flags = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in bns}
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    try:
        model.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        with torch.no_grad():
            for _ in range(max(1, int(batches))):
                x = torch.randn(tuple(shape), generator=gen).to(device=device, dtype=dtype)
                model(x)
    finally:
        for m, mom in momenta.items():
            m.momentum = mom
        for m, was_training in flags.items():
            m.train(was_training)
    return model
