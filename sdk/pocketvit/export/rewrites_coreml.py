"""Rewrites for Core ML (coremltools -> ML Program); registered in export/rewrites.py.

addcmul-as-mul-add: coremltools 9.0 has no conversion for `aten.addcmul` in either frontend (torch.export:
"Unsupported fx node addcmul"; torch.jit.trace: no 'addcmul' op), and timm writes two modules with it:
ConvNeXtV2's GlobalResponseNorm (`x + addcmul(bias, weight, x * x_n)`) and ResMLP's Affine
(`addcmul(beta, alpha, x)`). Written as a multiply and an add (`bias + weight * t`, what addcmul computes) they
convert; nothing else changes. Found by the zoo (docs/zoo.md: convnextv2_atto had no Core ML file).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pocketvit.export.rewrite_graph import replace_modules

if TYPE_CHECKING:  # pragma: no cover
    import torch


def addcmul_as_mul_add(model: torch.nn.Module) -> int:
    """timm GlobalResponseNorm and ResMLP Affine with `b + w * t` in place of `torch.addcmul(b, w, t)`."""
    from torch import nn

    class MulAddGRN(nn.Module):
        def __init__(self, grn: nn.Module):
            super().__init__()
            self.grn = grn

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            g = self.grn
            x_g = x.norm(p=2, dim=g.spatial_dim, keepdim=True)
            x_n = x_g / (x_g.mean(dim=g.channel_dim, keepdim=True) + g.eps)
            return x + (g.bias.view(g.wb_shape) + g.weight.view(g.wb_shape) * (x * x_n))

    class MulAddAffine(nn.Module):
        def __init__(self, affine: nn.Module):
            super().__init__()
            self.affine = affine

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.affine.beta + self.affine.alpha * x

    count = 0
    try:
        from timm.layers.grn import GlobalResponseNorm

        needed = ("spatial_dim", "channel_dim", "wb_shape", "eps", "weight", "bias")
        count += replace_modules(model, lambda m: type(m) is GlobalResponseNorm and all(hasattr(m, n) for n in needed),
                                 MulAddGRN)
    except ImportError:
        pass
    try:
        from timm.models.mlp_mixer import Affine

        count += replace_modules(model, lambda m: type(m) is Affine and hasattr(m, "alpha") and hasattr(m, "beta"),
                                 MulAddAffine)
    except ImportError:
        pass
    return count
