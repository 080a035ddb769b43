"""Lower a model to int8 per target: one config dataclass + one handler per toolchain.

    from pocketvit.export.quantize import ExecuTorchInt8, quantize_export
    f = quantize_export(model, example, calib, ExecuTorchInt8(), out_dir / "model-int8.pte")
    f.precision == "int8"; f.info["float_layers"]       # layers the sensitivity pass kept in float

Configs (configs.py): ExecuTorchInt8 (PT2E + XNNPACKQuantizer, static per-channel calibrated, or
dynamic), LiteRTInt8 (litert-torch's PT2E quantizer, full-integer static or dynamic-range), OnnxInt8
(onnxruntime quantize_static, QDQ), CoreMLInt8 (coremltools.optimize: int8 linear weights; W8A8
needs Core ML to run the calibration, which Linux cannot). `calib` is a float tensor of preprocessed
*training* images (calibration.py refuses the test split). `float_layers` (module names) are left in
float; sensitivity.py chooses them automatically against an accuracy budget.

What a written file holds and where its time goes: `python -m pocketvit.export.quantize.contents FILE`
(tensor by tensor) and `python -m benchmarks.int8_floor BUNDLE` (int8 vs fp32 .pte: call and
node floors, per-op profile, size floor); `python -m benchmarks.int8_measure BUNDLE` measures
accuracy, agreement, size and latency of every int8 file against its fp32 twin.

Importing this package is instant; torch and the toolchains are imported by the handlers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pocketvit.export.quantize.configs import (
    CONFIG_TYPES,
    CoreMLInt8,
    ExecuTorchInt8,
    LiteRTInt8,
    OnnxInt8,
    QuantConfig,
    config_for,
    int8_target,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from pocketvit.export._common import ExportedFile

__all__ = [
    "CONFIG_TYPES", "CoreMLInt8", "ExecuTorchInt8", "LiteRTInt8", "OnnxInt8", "QuantConfig", "config_for",
    "int8_target", "quantize_export",
]


def quantize_export(
    model: torch.nn.Module,
    example: torch.Tensor,
    calib: torch.Tensor,
    config: QuantConfig,
    path: Path | str,
    *,
    float_layers: Sequence[str] = (),
    model_name: str = "model",
) -> ExportedFile:
    """Quantize `model` with `config`'s toolchain (calibrated on `calib`) and write the int8 file at `path`."""
    from pocketvit.export.prepare import prepare_for_export

    model = prepare_for_export(model, unfused_attention=True)
    if isinstance(config, ExecuTorchInt8):
        from pocketvit.export.quantize.executorch import quantize_executorch as handler
    elif isinstance(config, LiteRTInt8):
        from pocketvit.export.quantize.litert import quantize_litert as handler
    elif isinstance(config, OnnxInt8):
        from pocketvit.export.quantize.onnx import quantize_onnx as handler
    elif isinstance(config, CoreMLInt8):
        from pocketvit.export.quantize.coreml import quantize_coreml as handler
    else:
        raise TypeError(f"no quantization handler for {type(config).__name__}")
    f = handler(model, example, calib, config, Path(path), float_layers=tuple(float_layers), model_name=model_name)
    f.info.setdefault("float_layers", list(float_layers))
    f.info["quantization"] = config.describe()
    return f
