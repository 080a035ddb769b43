"""Pieces shared by `verify` and `bench`: opening a bundle, choosing targets, inputs, the eager model."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pocketvit.errors import BundleError, MissingExtraError, PocketVitError
from pocketvit.runtime import Bundle, Predictor, load, prepare_image, preprocess_array

COREML_NOTE = "converted; execution needs macOS"


def open_bundle(path: str | os.PathLike | Bundle, targets: list[str] | None) -> tuple[Bundle, list[str]]:
    """Open a bundle, check every file's sha256, and resolve the requested targets (default: all)."""
    bundle = path if isinstance(path, Bundle) else Bundle.open(path)
    bundle.verify()
    if not targets:
        return bundle, bundle.targets
    chosen: list[str] = []
    for t in targets:
        bundle.file_info(t)  # raises, naming the bundle's targets, for an unknown one
        if t not in chosen:
            chosen.append(t)
    return bundle, chosen


def executable_here(runtime: str) -> bool:
    return runtime != "coreml" or sys.platform == "darwin"


def open_target(
    bundle: Bundle, target: str, threads: int, explicit: bool, use_exits: bool = False
) -> tuple[Predictor | None, str | None]:
    """(predictor, None), or (None, note) for Core ML off macOS and for a runtime that is not installed.

    A missing runtime is an error only when the user named the target (`explicit`).
    """
    if not executable_here(bundle.file_info(target)["runtime"]):
        return None, COREML_NOTE
    try:
        return load(bundle, target=target, num_threads=threads, warmup=0, use_exits=use_exits), None
    except MissingExtraError as e:
        if explicit:
            raise
        return None, f"runtime not installed: {e}"


def runtime_module(p: Predictor) -> str:
    """Which module runs an opened target: LiteRT's interpreter (ai_edge_litert, or the tflite_runtime fallback),
    ONNX Runtime with its providers, executorch.runtime."""
    b = getattr(p.backend, "main", p.backend)
    runtime = p.bundle.runtime_of(p.target)
    module = getattr(b, "interpreter_module", None) or {"executorch": "executorch.runtime"}.get(runtime, runtime)
    if runtime == "onnx" and hasattr(b, "session"):
        module = f"onnxruntime ({', '.join(b.session.get_providers())})"
    return module


def input_color(spec: dict[str, Any]) -> str:
    """The colour order of the images we generate: the model's own (GRAY or RGB/BGR)."""
    return spec.get("color_order", "GRAY" if spec["channels"] == 1 else "RGB")


def random_images(spec: dict[str, Any], n: int, seed: int, scale: float = 1.25) -> list[np.ndarray]:
    """``n`` seeded random uint8 images, a little larger than the model input (so the bundle's resize
    and crop run), in the model's colour order."""
    rng = np.random.default_rng(seed)
    h = max(1, round(spec["height"] * scale))
    w = max(1, round(spec["width"] * scale))
    c = spec["channels"]
    return [rng.integers(0, 256, (h, w, c), dtype=np.uint8) for _ in range(n)]


def crops_of(images: list[np.ndarray], spec: dict[str, Any], color: str | None = None) -> np.ndarray:
    """Steps 1-3 of the bundle's preprocessing (colour, resize, crop): NxHxWxC uint8. ``color``: the images'
    colour order (default: the model's own)."""
    color = color or input_color(spec)
    return np.stack([prepare_image(im, spec, color) for im in images])


def target_outputs(p: Predictor, spec: dict[str, Any], crops: np.ndarray, images: list[np.ndarray]) -> np.ndarray:
    """verify's inputs through one opened target, as N x outputs float32: ``crops`` (``images`` prepared for the
    bundle's ``spec``) in the target's input form; a file with an input of its own (a drop-in file of a gray model
    takes RGB) gets the same ``images`` prepared for its spec."""
    if p.input_spec is spec:
        x = preprocess_array(crops, spec, p.input_form)
    else:
        x = preprocess_array(crops_of(images, p.input_spec, input_color(spec)), p.input_spec, p.input_form)
    return np.asarray(p.run(x), dtype=np.float32).reshape(len(x), -1)


def eager_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The eager torch model always takes float32 NCHW, whatever layout an exported file has."""
    return {**spec, "layout": "NCHW", "dtype": "float32"}


def eager_inputs(crops: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    return preprocess_array(crops, eager_spec(spec), "float-nchw")


def has_source(bundle: Bundle) -> bool:
    return isinstance(bundle.manifest.get("source"), dict)


def eager_model(bundle: Bundle):
    """The eager torch model the bundle was exported from (manifest ``source`` + reference weights)."""
    source = bundle.manifest.get("source")
    if not isinstance(source, dict):
        raise BundleError(
            f"{bundle.source}: manifest.json has no 'source' block, so the eager torch model cannot be "
            "rebuilt for comparison; rebuild the bundle with this pocketvit (`pocketvit build`)"
        )
    from pocketvit.models import from_source

    try:
        return from_source(source, Path(bundle.root))
    except PocketVitError:
        raise
    except Exception as e:  # noqa: BLE001 - torch/safetensors raise several types; all mean the same to the user
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BundleError(
            f"{bundle.root / source.get('weights', 'reference/weights.safetensors')}: the reference weights do "
            f"not fit the {source.get('arch')!r} model this pocketvit builds ({first}); the bundle was made by "
            f"{bundle.manifest.get('created_with') or 'another pocketvit'} — rebuild it with this one"
        ) from None


def eager_outputs(model, x: np.ndarray, outputs: str, batch: int = 256) -> np.ndarray:
    """Eager torch on a preprocessed float NCHW batch; softmax when the exported files output probabilities."""
    import torch

    with torch.no_grad():
        ys = [model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch]))) for i in range(0, len(x), batch)]
        y = torch.cat([t if isinstance(t, torch.Tensor) else t[0] for t in ys])
        if outputs == "probabilities":
            y = torch.softmax(y.reshape(len(y), -1), dim=1)
    return y.float().numpy()


def precision_class(target: str, entry: dict[str, Any]) -> str:
    """fp32 | fp16 | int8, from the manifest's precision (or the target's name)."""
    p = str(entry.get("precision") or "").lower()
    if "int8" in p or "int8" in target or p.startswith(("int", "w8")):
        return "int8"
    if "16" in p:
        return "fp16"
    return "fp32"


def table_console(stderr: bool = False):
    """A rich Console for tables: the terminal's width, or 160 columns when output is redirected
    (rich's default of 80 would cut numbers short in a log file)."""
    from rich.console import Console

    c = Console(stderr=stderr)
    return c if c.is_terminal else Console(stderr=stderr, width=160)
