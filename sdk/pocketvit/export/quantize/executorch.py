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


def slow_int8_depthwise(model: torch.nn.Module) -> list[str]:
    """Module paths of the depthwise convs (one input channel per group, channel multiplier allowed) with a
    kernel larger than 3x3: XNNPACK's QC8 kernels for them are slower than its F32 ones (x86, 1 thread, per
    conv: 5x5 depthwise ~1.75x, 7x7 stride-2 channel-multiplier ~2x; a 7x7 depthwise runs as a QC8 IGEMM,
    ~5x the F32 time of its 5x5 split), so int8 keeps them float. 3x3 depthwise (about equal) stays int8."""
    from torch import nn

    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and name and m.groups > 1 and m.groups == m.in_channels
            and max(m.kernel_size) > 3]


def quantize_executorch(model: torch.nn.Module, example: torch.Tensor, calib: torch.Tensor,
                        config: ExecuTorchInt8, path: Path, *, float_layers: Sequence[str] = (),
                        model_name: str = "model") -> ExportedFile:
    from pocketvit.export.executorch import lower_program, torch_export, write_program
    from pocketvit.export.quantize.pt2e import quantized_graph, quantizer_mends, xnnpack_quantizer
    from pocketvit.export.rewrites import apply_rewrites

    require("executorch.backends.xnnpack.quantizer.xnnpack_quantizer", "executorch", _WHY)
    depthwise = slow_int8_depthwise(model) if config.float_depthwise else []
    float_layers = tuple(float_layers) + tuple(n for n in depthwise if n not in float_layers)
    # layernorm_as_linear=False switches off that one rewrite (it used to switch off every int8 rewrite)
    rewrites = apply_rewrites(model, "executorch-int8",
                              tuple(config.no_rewrite) + (() if config.layernorm_as_linear else ("layernorm-as-linear",)))
    # the fp32 export's rewrite keeps LayerNorm inside the delegate (native_layer_norm is left outside,
    # splitting the graph into several delegate calls); its mean/variance linears stay float: int8
    # would quantize x*x and the variance, which is what makes LayerNorm outputs fragile.
    float_layers = tuple(float_layers) + tuple(
        name for name, m in model.named_modules() if type(m).__name__ in ("LinearLayerNorm", "ConvLayerNorm2d"))
    try:
        converted = quantized_graph(model, example, calib, xnnpack_quantizer(config.mode, config.per_channel),
                                    float_layers, batched=True)
    except Exception as exc:
        raise lowering_error(model_name, config.target, exc, "PT2E quantization (XNNPACKQuantizer)") from exc
    ep = torch_export(converted, (example,), model_name)
    et, summaries = lower_program(ep, model_name)
    write_program(et, path, model_name)
    info = dict(summaries["forward"])
    info["methods"] = ["forward"]
    info["rewrites"] = rewrites
    info["quantizer_mends"] = quantizer_mends(converted)
    info["float_layers"] = list(float_layers)
    info["float_depthwise"] = len(depthwise)
    return ExportedFile(target=config.target, path=path, runtime="executorch", precision="int8", info=info)
