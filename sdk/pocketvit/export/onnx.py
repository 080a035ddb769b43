"""ONNX: torch.onnx.export (torch.export-based exporter, opset 18), input "input", output "output".

The torch.export-based exporter (dynamo=True, needs onnxscript) is the default in torch 2.14 and is
quiet with verbose=False. When it cannot capture a model, the TorchScript exporter is tried once and
`info["exporter"]` says which one wrote the file. The written model passes `onnx.checker` (with shape
inference) before it is moved into place.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from pocketvit.errors import ExportError
from pocketvit.export._common import ExportedFile, atomic_path, lowering_error, require, short_reason

if TYPE_CHECKING:  # pragma: no cover
    import torch

TARGET = "onnx"
OPSET = 18
_WHY = "needed to write and check .onnx files"


def _export_dynamo(model, args, tmp: Path, opset: int) -> None:
    import torch

    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            args,
            input_names=["input"],
            output_names=["output"],
            opset_version=opset,
            dynamo=True,
            verbose=False,
            optimize=True,
        )
        program.save(str(tmp), external_data=False)


def _export_torchscript(model, args, tmp: Path, opset: int) -> None:
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            args,
            str(tmp),
            input_names=["input"],
            output_names=["output"],
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
        )


def export_onnx(
    model: torch.nn.Module,
    example: torch.Tensor | tuple,
    path: Path | str,
    *,
    model_name: str = "model",
    prepare: bool = True,
    opset: int = OPSET,
) -> ExportedFile:
    """Write `model` as an ONNX file at `path` (static shapes of `example`)."""
    from pocketvit.export.prepare import prepare_for_export

    onnx = require("onnx", "onnx", _WHY)
    require("onnxscript", "onnx", "needed by torch's ONNX exporter")
    args = example if isinstance(example, tuple) else (example,)
    if prepare:
        model = prepare_for_export(model)
    path = Path(path)
    info: dict = {}
    with atomic_path(path) as tmp:
        try:
            _export_dynamo(model, args, tmp, opset)
            info["exporter"] = "torch.export"
        except Exception as first:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            try:
                _export_torchscript(model, args, tmp, opset)
            except Exception:
                raise lowering_error(model_name, TARGET, first, "torch.onnx.export") from first
            info["exporter"] = "torchscript"
            info["fallback_reason"] = short_reason(first)
        try:
            proto = onnx.load(str(tmp))
            onnx.checker.check_model(proto, full_check=True)
        except Exception as exc:
            raise lowering_error(model_name, TARGET, exc, "onnx.checker") from exc
        inputs = [i.name for i in proto.graph.input]
        outputs = [o.name for o in proto.graph.output]
        if "input" not in inputs or not outputs:
            raise ExportError(
                f"Could not export '{model_name}' to {TARGET}: the graph has inputs {inputs} and outputs "
                f"{outputs}, expected 'input' and at least one output."
            )
        opsets = {imp.domain or "ai.onnx": imp.version for imp in proto.opset_import}
        info.update(
            opset=int(opsets.get("ai.onnx", opset)),
            nodes=len(proto.graph.node),
            ops=dict(Counter(n.op_type for n in proto.graph.node).most_common()),
            inputs=inputs,
            outputs=outputs,
        )
    return ExportedFile(target=TARGET, path=path, runtime="onnx", precision="fp32", info=info)
