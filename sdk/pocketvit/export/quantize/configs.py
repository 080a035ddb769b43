"""One small dataclass per target's int8 lowering (the torchao habit: configs are data, handlers apart)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from pocketvit.errors import ExportError


@dataclass(frozen=True)
class ExecuTorchInt8:
    """PT2E + XNNPACKQuantizer. static: int8 weights (per-channel) and int8 activations calibrated on
    training images; dynamic: int8 weights, activations quantized per call (linear layers only)."""

    mode: Literal["static", "dynamic"] = "static"
    per_channel: bool = True
    layernorm_as_linear: bool = True  # LayerNorm inside the delegate, kept float (export/rewrites.py)
    float_depthwise: bool = True  # depthwise convs larger than 3x3 kept float (XNNPACK's QC8 ones are slower)
    no_rewrite: tuple[str, ...] = ()  # export/rewrites.py names (or "all") not applied before int8
    target: str = "executorch-int8"

    def describe(self) -> dict:
        return asdict(self) | {"toolchain": "torchao PT2E + executorch XNNPACKQuantizer"}


@dataclass(frozen=True)
class LiteRTInt8:
    """litert-torch's PT2E quantizer. static: full-integer int8 (int8 input/output tensors);
    dynamic: dynamic-range (int8 weights, float activations)."""

    mode: Literal["static", "dynamic"] = "static"
    per_channel: bool = True
    target: str = "litert-int8"
    no_rewrite: tuple[str, ...] = ()  # export/rewrites.py names (or "all") not applied before int8

    def describe(self) -> dict:
        return asdict(self) | {"toolchain": "litert_torch.quantize PT2EQuantizer"}


@dataclass(frozen=True)
class OnnxInt8:
    """onnxruntime.quantization.quantize_static, QDQ format, uint8 activations, int8 per-channel weights."""

    per_channel: bool = True
    target: str = "onnx-int8"

    def describe(self) -> dict:
        return asdict(self) | {"toolchain": "onnxruntime.quantization.quantize_static (QDQ)"}


@dataclass(frozen=True)
class CoreMLInt8:
    """coremltools.optimize.coreml: int8 linear (symmetric, per-channel) weight quantization of the ML
    Program. "w8a8" also asks for activation quantization, which needs Core ML to execute the model on
    calibration data (macOS only): on Linux it fails with a clear message. "palettize": k-means weight
    palettization (palettize_weights, `nbits`-bit indices into a lookup table per weight tensor)."""

    mode: Literal["weights", "w8a8", "palettize"] = "weights"
    nbits: int = 6  # palettize only
    target: str = "coreml-int8"
    no_rewrite: tuple[str, ...] = ()  # export/rewrites.py names (or "all") not applied before conversion

    def describe(self) -> dict:
        d = asdict(self)
        if not d["no_rewrite"]:  # keeps earlier stage hashes
            d.pop("no_rewrite")
        if self.mode != "palettize":  # nbits means nothing then (and keeps earlier stage hashes)
            d.pop("nbits")
            return d | {"toolchain": "coremltools.optimize.coreml.linear_quantize_weights"}
        return d | {"toolchain": "coremltools.optimize.coreml.palettize_weights (kmeans)"}


QuantConfig = ExecuTorchInt8 | LiteRTInt8 | OnnxInt8 | CoreMLInt8
CONFIG_TYPES = {"executorch": ExecuTorchInt8, "litert": LiteRTInt8, "onnx": OnnxInt8, "coreml": CoreMLInt8}


def int8_target(target: str) -> str:
    """'executorch' -> 'executorch-int8' (and 'executorch-int8' stays)."""
    base = target.split("-", 1)[0]
    if base not in CONFIG_TYPES:
        raise ExportError(f"Unknown target '{target}' for int8; choose one of {', '.join(CONFIG_TYPES)}.")
    return f"{base}-int8"


def config_for(target: str, **options) -> QuantConfig:
    """The default config of a target ('executorch' or 'executorch-int8'), with options overriding fields."""
    base = int8_target(target).split("-", 1)[0]
    cls = CONFIG_TYPES[base]
    known = {f for f in cls.__dataclass_fields__ if f != "target"}
    return cls(**{k: v for k, v in options.items() if k in known})
