"""LiteRT int8 through litert-torch's PT2E quantizer: full-integer static (int8 input and output
tensors; pocketvit.runtime quantizes the input and dequantizes the output with the file's own scale and
zero point) or dynamic-range (int8 weights, float activations)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pocketvit.export._common import ExportedFile, lowering_error, require
from pocketvit.export.quantize.configs import LiteRTInt8

if TYPE_CHECKING:  # pragma: no cover
    import torch

_WHY = "needed to write int8 .tflite files"


def quantize_litert(model: torch.nn.Module, example: torch.Tensor, calib: torch.Tensor,
                    config: LiteRTInt8, path: Path, *, float_layers: Sequence[str] = (),
                    model_name: str = "model") -> ExportedFile:
    import torch

    from pocketvit.export.litert import DEFAULT_SIGNATURE, quiet_litert, written_file
    from pocketvit.export.quantize.pt2e import litert_quantizer, quantized_graph, quantizer_mends

    litert_torch = require("litert_torch", "litert", _WHY)
    from litert_torch.quantize.quant_config import QuantConfig

    from pocketvit.export.rewrites import apply_rewrites

    rewrites = apply_rewrites(model, config.target, config.no_rewrite)
    make = litert_quantizer(config.mode, config.per_channel)
    try:
        converted = quantized_graph(model, example, calib, make, float_layers, fold=False, batched=True)
        with quiet_litert(), torch.no_grad():
            edge = litert_torch.convert(converted, (example,),
                                        quant_config=QuantConfig(pt2e_quantizer=make(float_layers)))
    except Exception as exc:
        raise lowering_error(model_name, config.target, exc, "litert_torch.convert (PT2E int8)") from exc
    f = written_file(edge, path, model_name, signature=DEFAULT_SIGNATURE)
    f.target, f.precision = config.target, "int8"
    f.info["rewrites"] = rewrites
    f.info["quantizer_mends"] = quantizer_mends(converted)
    return f
