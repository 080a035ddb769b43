"""Lower a torch nn.Module to a deployable file, one module per target.

    from pocketvit.export import export_model
    f = export_model(model, torch.randn(1, 3, 224, 224), "executorch", out_dir)
    f.path, f.info["delegate_calls"], f.info["outside_ops"]

Targets: executorch (.pte, XNNPACK), litert (.tflite), coreml (.mlpackage, fp16, not executable on
Linux), onnx (.onnx). Every file is written to a temporary name and renamed into place. A lowering
that fails raises `pocketvit.errors.ExportError` naming the model, target and (when it can be found)
the operator; a missing toolchain raises `MissingExtraError` naming the pip extra.

Importing this package is instant: every toolchain (and torch) is imported inside the function
that needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pocketvit.export._common import TARGETS, ExportedFile, check_target, file_extension

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "TARGETS",
    "ExportedFile",
    "export_model",
    "file_extension",
    "export_executorch_methods",
    "export_litert_signatures",
    "recalibrate_batchnorm",
    "prepare_for_export",
]


def export_model(
    model: torch.nn.Module,
    example: torch.Tensor,
    target: str,
    out_dir: Path | str,
    name: str = "model",
    model_name: str = "model",
    *,
    prepare: bool = True,
    disabled_rewrites: tuple[str, ...] = (),
    compare_rewrites: bool = False,
) -> ExportedFile:
    """Lower `model` (traced at `example`'s static shape) for `target`; write `out_dir/name<ext>`.

    model_name is the human name used in error messages. prepare=False skips the shared preparation
    (copy, eval, re-parameterisation, non-fused attention for executorch) when the caller did it.
    disabled_rewrites: names from export.rewrites to switch off, or ("all",); compare_rewrites: also
    report the ExecuTorch / LiteRT delegation without them (info["before_rewrites"]).
    """
    check_target(target)
    from pocketvit.export.rewrites import check_rewrite_names

    check_rewrite_names(disabled_rewrites)
    path = Path(out_dir) / f"{name}{file_extension(target)}"
    if target == "executorch":
        from pocketvit.export.executorch import export_executorch

        return export_executorch(model, example, path, model_name=model_name, prepare=prepare,
                                 disabled_rewrites=tuple(disabled_rewrites), compare_rewrites=compare_rewrites)
    if target == "onnx":
        from pocketvit.export.onnx import export_onnx

        return export_onnx(model, example, path, model_name=model_name, prepare=prepare)
    if target == "litert":
        from pocketvit.export.litert import export_litert

        return export_litert(model, example, path, model_name=model_name, prepare=prepare,
                             disabled_rewrites=tuple(disabled_rewrites), compare_rewrites=compare_rewrites)
    from pocketvit.export.coreml import export_coreml

    return export_coreml(model, example, path, model_name=model_name, prepare=prepare,
                         disabled_rewrites=tuple(disabled_rewrites))


def __getattr__(name: str):
    # Lazy re-exports: the functions live in modules that need torch or a toolchain.
    if name == "export_executorch_methods":
        from pocketvit.export.executorch import export_executorch_methods

        return export_executorch_methods
    if name == "export_litert_signatures":
        from pocketvit.export.litert import export_litert_signatures

        return export_litert_signatures
    if name in ("recalibrate_batchnorm", "prepare_for_export"):
        from pocketvit.export import prepare

        return getattr(prepare, name)
    raise AttributeError(f"module 'pocketvit.export' has no attribute {name!r}")
