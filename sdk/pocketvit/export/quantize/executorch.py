"""ExecuTorch int8: PT2E with XNNPACKQuantizer (static per-channel calibrated, or dynamic), lowered to XNNPACK."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pocketvit.export._common import ExportedFile, lowering_error, require
from pocketvit.export.quantize.configs import ExecuTorchInt8

if TYPE_CHECKING:  # pragma: no cover
    import torch

_WHY = "needed to write int8 .pte files"


def quantize_executorch(model: torch.nn.Module, example: torch.Tensor, calib: torch.Tensor,
                        config: ExecuTorchInt8, path: Path, *, float_layers: Sequence[str] = (),
                        model_name: str = "model") -> ExportedFile:
    from pocketvit.export.executorch import _lower, _torch_export, _write
    from pocketvit.export.quantize.pt2e import quantized_graph, xnnpack_quantizer

    require("executorch.backends.xnnpack.quantizer.xnnpack_quantizer", "executorch", _WHY)
    rewrites: dict[str, int] = {}
    if config.layernorm_as_linear:
        # the fp32 export's rewrite keeps LayerNorm inside the delegate (native_layer_norm is left outside,
        # splitting the graph into several delegate calls); its mean/variance linears stay float: int8
        # would quantize x*x and the variance, which is what makes LayerNorm outputs fragile.
        from pocketvit.export.rewrites import apply_rewrites

        rewrites = apply_rewrites(model, "executorch-int8")
        float_layers = tuple(float_layers) + tuple(
            name for name, m in model.named_modules() if type(m).__name__ in ("LinearLayerNorm", "ConvLayerNorm2d"))
    try:
        converted = quantized_graph(model, example, calib, xnnpack_quantizer(config.mode, config.per_channel),
                                    float_layers, batched=True)
    except Exception as exc:
        raise lowering_error(model_name, config.target, exc, "PT2E quantization (XNNPACKQuantizer)") from exc
    ep = _torch_export(converted, (example,), model_name)
    et, summaries = _lower(ep, model_name)
    _write(et, path, model_name)
    info = dict(summaries["forward"])
    info["methods"] = ["forward"]
    info["rewrites"] = rewrites
    info["float_layers"] = list(float_layers)
    return ExportedFile(target=config.target, path=path, runtime="executorch", precision="int8", info=info)
