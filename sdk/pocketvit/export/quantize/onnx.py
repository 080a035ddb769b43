"""ONNX int8 (the peer baseline): the fp32 .onnx, then onnxruntime.quantization.quantize_static.

QDQ format, uint8 activations (what ONNX Runtime's x86 int8 kernels prefer), int8 per-channel weights,
MinMax calibration on training images. Layers kept in float are found through the exporter's
`pkg.torch.onnx.name_scopes` node metadata (the torch module path of every ONNX node).
"""

from __future__ import annotations

import ast
import contextlib
import io
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pocketvit.export._common import ExportedFile, atomic_path, lowering_error, require
from pocketvit.export.quantize.configs import OnnxInt8

if TYPE_CHECKING:  # pragma: no cover
    import torch

_WHY = "needed to quantize .onnx files"


def nodes_under(proto, module_paths: Sequence[str]) -> list[str]:
    """Names of the ONNX nodes the torch exporter placed under any of `module_paths`."""
    wanted = set(module_paths)
    found = []
    for node in proto.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        scopes = meta.get("pkg.torch.onnx.name_scopes")
        if not scopes:
            continue
        try:
            names = ast.literal_eval(scopes)
        except (ValueError, SyntaxError):
            continue
        if wanted.intersection(names):
            found.append(node.name)
    return found


def quantize_onnx(model: torch.nn.Module, example: torch.Tensor, calib: torch.Tensor, config: OnnxInt8,
                  path: Path, *, float_layers: Sequence[str] = (), model_name: str = "model") -> ExportedFile:
    from collections import Counter

    from pocketvit.export.onnx import export_onnx

    onnx = require("onnx", "onnx", _WHY)
    oq = require("onnxruntime.quantization", "onnx", _WHY)
    images = calib.detach().cpu().numpy().astype("float32")

    class Reader(oq.CalibrationDataReader):
        def __init__(self):
            self._it = iter(range(len(images)))

        def get_next(self):
            i = next(self._it, None)
            return None if i is None else {"input": images[i:i + 1]}

    with tempfile.TemporaryDirectory(prefix="pocketvit-onnx-int8-") as tmpdir:
        fp32 = export_onnx(model, example, Path(tmpdir) / "fp32.onnx", model_name=model_name, prepare=False)
        proto = onnx.load(str(fp32.path))
        exclude = nodes_under(proto, float_layers)
        with atomic_path(path) as tmp:
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    oq.quantize_static(
                        str(fp32.path), str(tmp), Reader(), quant_format=oq.QuantFormat.QDQ,
                        per_channel=config.per_channel, activation_type=oq.QuantType.QUInt8,
                        weight_type=oq.QuantType.QInt8, nodes_to_exclude=exclude or None,
                        calibrate_method=oq.CalibrationMethod.MinMax,
                    )
            except Exception as exc:
                raise lowering_error(model_name, config.target, exc, "onnxruntime quantize_static") from exc
            q = onnx.load(str(tmp))
    ops = Counter(n.op_type for n in q.graph.node)
    info = {"exporter": fp32.info.get("exporter"), "opset": fp32.info.get("opset"), "nodes": len(q.graph.node),
            "ops": dict(ops.most_common()), "nodes_kept_float": len(exclude), "inputs": ["input"],
            "outputs": fp32.info.get("outputs")}
    return ExportedFile(target=config.target, path=path, runtime="onnx", precision="int8", info=info)
