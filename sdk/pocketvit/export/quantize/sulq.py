"""I&S-ViT's shift-uniform-log2 quantizer (SULQ) for post-softmax activations, as a measurement.

Post-softmax values lie in [0, 1] and are very skewed (most near 0, a few near 1). A uniform int grid
spends its levels evenly; a log2 grid spends them near 0 but wastes them for values near 1. SULQ shifts
first, then quantizes uniformly in the log2 domain:

    q = clamp(round(-log2(x + eta) / s), 0, 2^k - 1),     x_hat = 2^(-q * s) - eta

No shipped target can run this: XNNPACK and TFLite int8 softmax outputs are uniform int8 with a fixed
scale (1/256, zero point -128), ONNX Runtime's QDQ is affine, Core ML's activation quantization is
linear. A log-domain code would need a lookup-table dequantize in front of the attention-times-value
matmul, which none of them has for activations. So pocketvit measures what SULQ would buy against the
uniform grid the runtimes use (`post_softmax_errors`), and for the shipped files relies on the
sensitivity pass: the layers around attention that int8 harms are kept in float there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch


def uniform(x: np.ndarray, bits: int) -> np.ndarray:
    """The runtimes' grid for softmax outputs: scale 1/2^bits over [0, 1]."""
    levels = 2 ** bits
    return np.clip(np.round(x * levels), 0, levels - 1) / levels


def sulq(x: np.ndarray, bits: int, eta: float, step: float) -> np.ndarray:
    """Shift-uniform-log2 quantize-dequantize of values in [0, 1]."""
    q = np.clip(np.round(-np.log2(x + eta) / step), 0, 2 ** bits - 1)
    return np.exp2(-q * step) - eta


def fit_sulq(x: np.ndarray, bits: int) -> tuple[float, float]:
    """(eta, step) minimizing the squared error on `x` (a small grid search; calibration data)."""
    best = (np.inf, 0.0, 1.0)
    sample = x.ravel()[:200_000]
    for eta in (0.0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3):
        top = -np.log2(eta) if eta > 0 else 24.0
        for frac in (0.25, 0.5, 0.75, 1.0):
            step = max(top * frac, 1e-3) / (2 ** bits - 1)
            err = float(np.mean((sulq(sample, bits, eta, step) - sample) ** 2))
            if err < best[0]:
                best = (err, eta, step)
    return best[1], best[2]


def softmax_outputs(model: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    """Every softmax output of `model` on `images`, flattened (torch.export graph, fx Interpreter)."""
    import torch

    from pocketvit.export.prepare import prepare_for_export

    model = prepare_for_export(model, unfused_attention=True)
    gm = torch.export.export(model, (images[:1],)).module()
    found: list[np.ndarray] = []

    class Grab(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n.op == "call_function" and "softmax" in str(n.target):
                found.append(out.detach().numpy().ravel())
            return out

    with torch.no_grad():
        for i in range(len(images)):
            Grab(gm).run(images[i:i + 1])
    return np.concatenate(found) if found else np.zeros(0, dtype=np.float32)


def post_softmax_errors(model: torch.nn.Module, images: torch.Tensor, bits=(4, 6, 8)) -> dict[str, Any]:
    """Mean squared error of uniform vs SULQ quantization of the model's post-softmax activations."""
    x = softmax_outputs(model, images)
    if not len(x):
        return {"softmax_values": 0}
    out: dict[str, Any] = {"softmax_values": len(x), "images": len(images),
                           "fraction_below_1_over_256": float(np.mean(x < 1 / 256))}
    for b in bits:
        eta, step = fit_sulq(x, b)
        out[f"{b}bit"] = {"uniform_mse": float(np.mean((uniform(x, b) - x) ** 2)),
                          "sulq_mse": float(np.mean((sulq(x, b, eta, step) - x) ** 2)), "eta": eta, "step": step}
    return out
