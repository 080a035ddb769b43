"""Drop-in model files: the bundle's image contract inside the graph, so MediaPipe Tasks, the TFLite Task
Library, Apple's Vision or a plain runtime call needs no preprocessing code. (Core ML's drop-in file, an
ImageType + ClassifierConfig model, is written by export/coreml_image.py; `export_dropin` dispatches to it.)

    from pocketvit.export.dropin import DropInWrapper, export_dropin
    f = export_dropin(model, spec, "litert", out_dir, labels=[...], input_dtype="uint8")

The wrapped graph takes NHWC pixels as a camera frame gives them (uint8 0..255, or float32 holding the same
0..255 values) in RGB (a GRAY model converts to luma inside, a BGR one swaps the channels inside), already
resized and cropped to the input size (resizing stays the app's job: MediaPipe and Vision do it). Inside: cast to float, NHWC -> NCHW,
``pixel * scale``, ``- mean``, ``/ std`` (folded into one multiply-add per channel), the model, and a softmax
for classifiers so the output is class probabilities. The manifest records the file's form:
``input_form`` "uint8-nhwc" or "float-nhwc" and ``outputs`` "probabilities"; pocketvit.runtime feeds each
form what it takes, so every target gives the same predictions.

Drop-in targets are named ``<runtime>-dropin`` (``litert-dropin`` -> model-dropin.tflite) and sit beside
the float files, which keep the float NCHW contract that verify, bench, early exits and int8 work with.
LiteRT drop-in files also get TFLite metadata (name, description, version, labels, normalization, colour
space), written in pocketvit's own environment (pocketvit.export.metadata).

Importing this module is instant: torch and the toolchains are imported inside the functions.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocketvit.errors import ExportError
from pocketvit.export._common import ExportedFile
from pocketvit.runtime.targets import DROPIN, RUNTIMES

if TYPE_CHECKING:  # pragma: no cover
    import torch

DROPIN_SUFFIX = DROPIN
DROPIN_RUNTIMES = RUNTIMES  # every runtime has a drop-in form
DEFAULT_DROPIN = ("litert", "coreml")  # what MediaPipe Tasks and Apple's Vision load
INPUT_DTYPES = ("uint8", "float")
FORM_OF_DTYPE = {"uint8": "uint8-nhwc", "float": "float-nhwc"}
LUMA = (19595.0, 38470.0, 7471.0)


def dropin_input(spec: dict[str, Any]) -> dict[str, Any]:
    """The per-file input override a drop-in file gets in the manifest: always RGB pixels (gray models take
    RGB frames and convert inside, as MediaPipe Tasks feeds only RGB)."""
    return {"channels": 3, "color_order": "RGB"}


def dropin_target(runtime: str) -> str:
    """'litert' -> 'litert-dropin' (the manifest target name of a runtime's drop-in file)."""
    return f"{runtime}{DROPIN_SUFFIX}"


def is_dropin(target: str) -> bool:
    return target.endswith(DROPIN_SUFFIX)


def normalization(spec: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Per-channel (mul, add) with ``pixel * mul + add == (pixel * scale - mean) / std``."""
    c = int(spec["channels"])
    scale = float(spec.get("scale", 1.0 / 255.0))

    def per_channel(v: Any, default: float) -> list[float]:
        if v is None:
            return [default] * c
        v = [float(x) for x in v]
        return v * c if len(v) == 1 else v

    mean, std = per_channel(spec.get("mean"), 0.0), per_channel(spec.get("std"), 1.0)
    return [scale / s for s in std], [-m / s for m, s in zip(mean, std)]


def check_dropin_spec(spec: dict[str, Any], model_name: str = "model") -> None:
    color = spec.get("color_order", "GRAY" if spec["channels"] == 1 else "RGB")
    if color not in ("GRAY", "RGB", "BGR"):
        raise ExportError(f"Could not make a drop-in file for '{model_name}': its colour order is {color}; drop-in "
                          "files take RGB pixels (what MediaPipe and Vision give) for GRAY, RGB or BGR models. Export "
                          "it with --no-dropin.")
    if spec.get("layout", "NCHW") != "NCHW":
        raise ExportError(f"Could not make a drop-in file for '{model_name}': the model takes layout "
                          f"{spec.get('layout')}; drop-in wrapping needs an NCHW model. Export it with --no-dropin.")


def _wrapper_class():
    import torch

    class DropInWrapper(torch.nn.Module):
        """NHWC pixels (uint8, or float 0..255) -> normalize -> model -> softmax (classifiers)."""

        def __init__(self, model: torch.nn.Module, spec: dict[str, Any], softmax: bool = True):
            super().__init__()
            self.model = model
            mul, add = normalization(spec)
            self.register_buffer("mul", torch.tensor(mul, dtype=torch.float32).reshape(1, -1, 1, 1))
            self.register_buffer("add", torch.tensor(add, dtype=torch.float32).reshape(1, -1, 1, 1))
            self.softmax = softmax
            # a gray model takes RGB frames (MediaPipe accepts only RGB) and computes PIL's integer luma inside:
            # every term is an integer below 2**24, so float32 gives exactly (19595 R + 38470 G + 7471 B + 32768) >> 16
            self.gray = int(spec["channels"]) == 1
            # as a 1x1 convolution, which XNNPACK delegates (a channel sum is left outside it)
            self.register_buffer("luma", torch.tensor(LUMA, dtype=torch.float32).reshape(1, 3, 1, 1))
            # a BGR model (Hugging Face MobileViT) takes the RGB frame with its channels swapped by a 1x1 convolution
            # (a permutation: exact), which the delegates take as they take the luma one
            self.bgr = spec.get("color_order") == "BGR"
            self.register_buffer("swap", torch.eye(3, dtype=torch.float32).flip(0).reshape(3, 3, 1, 1))

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            # contiguous: without it ExecuTorch leaves an as_strided_copy outside XNNPACK on some models
            # (EfficientNet-Lite0: 2 delegate calls instead of 1); only the uint8 cast stays outside
            x = pixels.to(torch.float32).permute(0, 3, 1, 2).contiguous()
            if self.gray:
                x = torch.floor((torch.nn.functional.conv2d(x, self.luma) + 32768.0) * (1.0 / 65536.0))
            elif self.bgr:
                x = torch.nn.functional.conv2d(x, self.swap)
            y = self.model(x * self.mul + self.add)
            if isinstance(y, (tuple, list)):  # an early-exit model: the final head is last
                y = y[-1]
            return torch.softmax(y, dim=-1) if self.softmax else y

    return DropInWrapper


def __getattr__(name: str):
    if name == "DropInWrapper":
        return _wrapper_class()
    raise AttributeError(f"module 'pocketvit.export.dropin' has no attribute {name!r}")


def wrap(model: torch.nn.Module, spec: dict[str, Any], task: str = "classify") -> torch.nn.Module:
    """The model with the image contract inside (eval mode); softmax only for classifiers."""
    return _wrapper_class()(model, spec, softmax=(task == "classify")).eval()


def example_pixels(spec: dict[str, Any], input_dtype: str) -> torch.Tensor:
    import torch

    shape = (1, int(spec["height"]), int(spec["width"]), 3)
    return torch.zeros(shape, dtype=torch.uint8 if input_dtype == "uint8" else torch.float32)


def export_dropin(
    model: torch.nn.Module,
    spec: dict[str, Any],
    runtime: str,
    out_dir: Path | str,
    *,
    labels: list[str] | None = None,
    task: str = "classify",
    input_dtype: str = "uint8",
    name: str = "model",
    model_name: str = "model",
    description: str | None = None,
    version: str | None = None,
    license: str | None = None,
    metadata: bool = False,
    disabled_rewrites: tuple[str, ...] = (),
) -> ExportedFile:
    """Write `out_dir/<name>-dropin<ext>` for `runtime` (litert, executorch or onnx); returns its ExportedFile
    with target '<runtime>-dropin', info {input_form, file_outputs, file_input, wrapper, metadata, ...}
    (file_outputs / file_input become the manifest entry's own "outputs" / "input").

    metadata: embed TFLite metadata (litert) / ONNX metadata_props (onnx) now (the bundle writer does it
    otherwise, with the bundle's labels and licence); info["metadata"] records what was written.
    disabled_rewrites: export rewrites switched off by name (`--no-rewrite`), as for the float files.
    """
    from pocketvit.export import export_model
    from pocketvit.export.prepare import prepare_for_export

    if runtime not in DROPIN_RUNTIMES:
        raise ExportError(f"No drop-in form for {runtime}; drop-in files exist for {', '.join(DROPIN_RUNTIMES)}.")
    if runtime == "coreml":  # ImageType input + ClassifierConfig: Vision feeds it camera frames
        from pocketvit.export.coreml_image import export_coreml_image

        return export_coreml_image(model, spec, labels or [], out_dir, name=name, model_name=model_name,
                                   disabled_rewrites=disabled_rewrites)
    if input_dtype not in INPUT_DTYPES:
        raise ExportError(f"--dropin-input must be one of {', '.join(INPUT_DTYPES)}, got {input_dtype!r}")
    check_dropin_spec(spec, model_name)
    # prepare the inner model (re-parameterisation, non-fused attention, ...) once, then wrap it
    inner = prepare_for_export(model, unfused_attention=(runtime == "executorch"))
    applied: dict[str, int] = {}
    if runtime in ("executorch", "litert"):
        from pocketvit.export.rewrites import apply_rewrites

        applied = apply_rewrites(inner, runtime, disabled_rewrites)
    wrapped = wrap(inner, spec, task)
    t0 = time.perf_counter()
    f = export_model(wrapped, example_pixels(spec, input_dtype), runtime, Path(out_dir),
                     name=f"{name}{DROPIN_SUFFIX}", model_name=f"{model_name} (drop-in)", prepare=False)
    info = dict(f.info)
    if applied:  # applied to the inner model above; the export of the wrapper finds none left to apply
        info["rewrites"] = {**applied, **(info.get("rewrites") or {})}
    info.update(
        input_form=FORM_OF_DTYPE[input_dtype],
        file_outputs="probabilities" if task == "classify" else "embedding",
        wrapper=("NHWC " + ("uint8" if input_dtype == "uint8" else "float32 0..255") + " pixels -> float, NCHW, "
                 "x * scale - mean / std -> model" + (" -> softmax" if task == "classify" else "")),
        seconds=round(time.perf_counter() - t0, 2),
    )
    if metadata and runtime == "litert":
        from pocketvit.export.metadata import write_tflite_metadata

        info["metadata"] = write_tflite_metadata(
            f.path, spec=spec, labels=labels or [], name=model_name, description=description, version=version,
            license=license, input_form=info["input_form"], task=task)
    elif metadata and runtime == "onnx":
        from pocketvit.export.metadata import write_onnx_metadata

        info["metadata"] = write_onnx_metadata(
            f.path, spec=spec, labels=labels or [], name=model_name, description=description, version=version,
            license=license, input_form=info["input_form"], outputs=info["file_outputs"])
    info["file_input"] = dropin_input(spec)
    return ExportedFile(target=dropin_target(runtime), path=f.path, runtime=f.runtime, precision=f.precision,
                        info=info)


__all__ = ["DROPIN_RUNTIMES", "check_dropin_spec", "dropin_target", "example_pixels", "export_dropin", "is_dropin",
           "normalization", "wrap"]
