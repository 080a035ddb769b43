"""Core ML int8: the fp16 ML Program, then coremltools.optimize.coreml.linear_quantize_weights (int8,
symmetric, per channel). Conversion and a spec check only: Core ML cannot execute on Linux.

W8A8 (`CoreMLInt8(mode="w8a8")`) adds `linear_quantize_activations`, which runs the model on the
calibration images through Core ML itself to collect activation ranges; that needs macOS, so on Linux it
fails with an ExportError that says so. Weight-only int8 does not change activations, so no layer is
kept in float for it (float_layers is ignored and recorded as empty). `mode="palettize"` instead stores
each weight as `nbits`-bit indices into a k-means lookup table (palettize_weights); the info records the
palettized weight ops (constexpr_lut_to_dense) and the size against the fp16 package.
"""

from __future__ import annotations

import platform
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pocketvit.errors import ExportError
from pocketvit.export._common import ExportedFile, atomic_path, lowering_error
from pocketvit.export.quantize.configs import CoreMLInt8
from pocketvit.runtime.io import path_bytes

if TYPE_CHECKING:  # pragma: no cover
    import torch


def quantize_coreml(model: torch.nn.Module, example: torch.Tensor, calib: torch.Tensor, config: CoreMLInt8,
                    path: Path, *, float_layers: Sequence[str] = (), model_name: str = "model") -> ExportedFile:
    from pocketvit.export.coreml import export_coreml, import_coremltools, quiet_coremltools, spec_check

    ct = import_coremltools()
    if config.mode == "w8a8" and platform.system() != "Darwin":
        raise ExportError(
            f"Could not export '{model_name}' to {config.target} (w8a8): coremltools' "
            "linear_quantize_activations calibrates by running the model in Core ML, which only runs on "
            "macOS/iOS. Use mode 'weights' (int8 weights) on Linux, or run this export on a Mac.")
    from coremltools.optimize.coreml import (
        OpLinearQuantizerConfig,
        OptimizationConfig,
        linear_quantize_weights,
    )

    from pocketvit.export.rewrites import apply_rewrites

    rewrites = apply_rewrites(model, config.target, config.no_rewrite)  # the model is quantize_export's prepared copy
    with tempfile.TemporaryDirectory(prefix="pocketvit-coreml-int8-") as tmpdir:
        fp16 = export_coreml(model, example, Path(tmpdir) / "fp16.mlpackage", model_name=model_name, prepare=False)
        fp16.info["rewrites"] = rewrites
        try:
            with quiet_coremltools():
                ml = ct.models.MLModel(str(fp16.path), skip_model_load=True)
                if config.mode == "palettize":
                    ml = _palettize(ml, config.nbits)
                else:
                    cfg = OptimizationConfig(global_config=OpLinearQuantizerConfig(
                        mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=0))
                    ml = linear_quantize_weights(ml, cfg)
                if config.mode == "w8a8":  # pragma: no cover - macOS only
                    from coremltools.optimize.coreml import linear_quantize_activations

                    samples = [{"input": calib[i:i + 1].numpy()} for i in range(len(calib))]
                    ml = linear_quantize_activations(ml, OptimizationConfig(global_config=OpLinearQuantizerConfig(
                        mode="linear_symmetric", dtype="int8")), samples)
        except Exception as exc:
            raise lowering_error(model_name, config.target, exc, f"coremltools.optimize ({config.mode})") from exc
        outputs = fp16.info["spec_check"]["outputs"]
        fp16_bytes = path_bytes(fp16.path)
        with atomic_path(path) as tmp:
            try:
                with quiet_coremltools():
                    ml.save(str(tmp))
                check = spec_check(tmp, example.shape, outputs)
            except Exception as exc:
                raise lowering_error(model_name, config.target, exc, "saving the int8 .mlpackage") from exc
            if not check["ok"]:
                raise ExportError(f"Could not export '{model_name}' to {config.target}: the saved package failed "
                                  f"its spec check ({check})")
    ops = check.get("mil_ops") or {}
    info = dict(fp16.info)
    info.update(spec_check=check, weights="int8 (linear symmetric, per channel)",
                int8_weight_ops=int(ops.get("constexpr_affine_dequantize", 0) + ops.get("constexpr_blockwise_shift_scale", 0)),
                float_layers=[], fp16_bytes=fp16_bytes, bytes=path_bytes(path))
    if config.mode == "palettize":
        info.update(weights=f"palettized, {config.nbits}-bit k-means lookup table per weight tensor",
                    palettized_weight_ops=int(ops.get("constexpr_lut_to_dense", 0)), nbits=config.nbits)
    info["size_vs_fp16"] = round(info["bytes"] / fp16_bytes, 4) if fp16_bytes else None
    return ExportedFile(target=config.target, path=path, runtime="coreml", precision="int8", info=info)


def _palettize(ml, nbits: int):
    """k-means palettization of every weight (weight_threshold 0: small tensors too)."""
    from coremltools.optimize.coreml import OpPalettizerConfig, OptimizationConfig, palettize_weights

    cfg = OpPalettizerConfig(mode="kmeans", nbits=int(nbits), granularity="per_tensor", weight_threshold=0)
    return palettize_weights(ml, OptimizationConfig(global_config=cfg))

