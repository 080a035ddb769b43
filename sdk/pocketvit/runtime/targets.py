"""The one table of targets: every fact about a runtime that the exporters, the recipe schema, the runtime
wrapper, verify and bench need (name, file suffix, float precision, the pip package that runs it, where it
executes). Torch-free. A target is a runtime name, optionally followed by `-int8`; drop-in files add `-dropin`."""

from __future__ import annotations

import platform
from dataclasses import dataclass


@dataclass(frozen=True)
class RuntimeInfo:
    name: str
    suffix: str  # the exported file's suffix (.mlpackage is a folder)
    precision: str  # precision of the float export
    package: str  # what to pip install to run it
    text_encoder: bool  # can carry a zero-shot bundle's text encoder

    def executes_here(self) -> bool:
        """Core ML models convert anywhere but execute only on Apple platforms."""
        return self.name != "coreml" or platform.system() == "Darwin"


TABLE: tuple[RuntimeInfo, ...] = (
    RuntimeInfo("executorch", ".pte", "fp32", "executorch", True),
    RuntimeInfo("litert", ".tflite", "fp32", "ai-edge-litert (or tflite-runtime)", True),
    RuntimeInfo("coreml", ".mlpackage", "fp16", "coremltools (macOS)", False),
    RuntimeInfo("onnx", ".onnx", "fp32", "onnxruntime", True),
)
BY_NAME = {r.name: r for r in TABLE}

INT8 = "-int8"
DROPIN = "-dropin"
RUNTIMES: tuple[str, ...] = tuple(r.name for r in TABLE)
TARGETS: tuple[str, ...] = tuple(t for r in RUNTIMES for t in (r, r + INT8))
# a zero-shot bundle's text encoder: the runtimes that can hold it, in the order the runtime prefers them
TEXT_RUNTIMES: tuple[str, ...] = ("onnx", "litert", "executorch")


def runtime_info(runtime: str) -> RuntimeInfo:
    return BY_NAME[runtime]


def runtime_of_target(target: str) -> str | None:
    """`litert-int8` -> `litert`, `coreml-dropin` -> `coreml`; None for a name that is no target."""
    base = target.removesuffix(DROPIN).removesuffix(INT8)
    return base if base in BY_NAME else None
