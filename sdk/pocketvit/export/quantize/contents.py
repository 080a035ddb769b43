"""What an exported file holds, tensor by tensor: where the bytes of a .pte or .tflite go.

    python -m pocketvit.export.quantize.contents FILE [FILE...] [--json OUT] [--top 20]

For a .pte: every XNNPACK delegate's constant tensors (dtype, shape, bytes, the named-data key they
point at, per-channel or per-tensor quantization), constants left in the program's own constant
buffer (operators outside the delegate), and the rest (program flatbuffer, delegate graph
flatbuffers, padding). Named data shared by several delegate values is counted once, as the file
stores it once; a constant the delegate takes as an input (XNNPACK does so for the constant operand of
an add or multiply) lives in the program's constant buffer. For a .tflite: every buffer-backed tensor (dtype, shape, bytes) and the flatbuffer
around them. `summary` groups the bytes by dtype and by role (weights, biases, other constants), so
an int8 file that is not 4x smaller than fp32 says why.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def _dtype(xnn: str) -> str:
    short = xnn.removeprefix("xnn_datatype_")
    return {"qcint8": "int8 (per-channel)", "qint8": "int8 (per-tensor)", "qcint32": "int32 (per-channel)",
            "qint32": "int32 (per-tensor)", "qdint8": "int8 (dynamic)"}.get(short, short)


def _role(dims: list[int], dtype: str) -> str:
    if "int32" in dtype:
        return "bias (int32)"
    if len(dims) >= 2 and dtype.startswith("int8"):
        return "weight (int8)"
    if len(dims) >= 2:
        return f"weight/table ({dtype})"
    return f"vector ({dtype})"


def _xnn_graph_json(flatbuffer: bytes) -> dict:
    """The delegate's XNNGraph flatbuffer as JSON, decoded with ExecuTorch's own flatc and schema."""
    from importlib import resources

    from executorch.backends.xnnpack import serialization
    from executorch.exir._serialize._flatbuffer import _get_flatc_path

    with tempfile.TemporaryDirectory() as d:
        schema = Path(d) / "schema.fbs"
        schema.write_bytes(resources.files(serialization).joinpath("schema.fbs").read_bytes())
        blob = Path(d) / "graph.bin"
        blob.write_bytes(flatbuffer)
        subprocess.run([_get_flatc_path(), "--json", "--strict-json", "--raw-binary", "-o", d, str(schema), "--",
                        str(blob)], check=True, capture_output=True)
        # flatc writes non-finite floats (a clamp's unbounded side) as bare inf / nan, which JSON has no word for
        text = re.sub(r"(?<=[:\[,\s])(-?)inf\b", r"\1Infinity", (Path(d) / "graph.json").read_text())
        return json.loads(re.sub(r"(?<=[:\[,\s])-?nan\b", "NaN", text))


def pte_contents(path: Path | str) -> dict[str, Any]:
    """Tensor-level contents of a .pte: the XNNPACK delegates' constants and what else takes space."""
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader
    from executorch.exir._serialize._program import deserialize_pte_binary

    data = Path(path).read_bytes()
    pte = deserialize_pte_binary(data)
    program = pte.program
    named = {}
    if pte.named_data is not None:
        store = pte.named_data
        named = {key: len(getattr(store.buffers[e.buffer_index], "buffer", store.buffers[e.buffer_index]))
                 for key, e in store.pte_data.items()}
    tensors: list[dict[str, Any]] = []
    seen_keys: set[str] = set()
    delegates = []
    for plan in program.execution_plan:
        for delegate in plan.delegates:
            blob = program.backend_delegate_data[delegate.processed.index].data
            header = XNNHeader.from_bytes(blob[:XNNHeader.EXPECTED_LENGTH])
            graph = _xnn_graph_json(blob[header.flatbuffer_offset:header.flatbuffer_offset + header.flatbuffer_size])
            delegates.append({"id": delegate.id, "blob_bytes": len(blob), "graph_flatbuffer_bytes": header.flatbuffer_size,
                              "inline_constant_bytes": header.constant_data_size, "nodes": len(graph.get("xnodes", []))})
            offsets = graph.get("constant_data", [])
            for v in graph.get("xvalues", []):
                union = v["xvalue_union"]
                tv = union.get("tensor_value", union)
                scales = (union.get("quant_params") or {}).get("scale_buffer_idx", 0)
                if scales and scales < len(offsets):
                    key = offsets[scales].get("named_key", "")
                    shared = key in seen_keys
                    seen_keys.add(key)
                    tensors.append({"where": delegate.id, "key": key, "dtype": "fp32", "elements": 0,
                                    "shape": [int((union.get("quant_params") or {}).get("num_scales", 0))],
                                    "bytes": 0 if shared else named.get(key, int(offsets[scales].get("size", 0))),
                                    "shared_with_earlier": shared, "role": "per-channel scales (fp32)"})
                idx = tv.get("constant_buffer_idx", 0)
                if not idx:
                    continue
                entry = offsets[idx] if idx < len(offsets) else {}
                key = entry.get("named_key", "")
                dims = [int(d) for d in tv.get("dims", [])]
                dtype = _dtype(tv.get("datatype", "xnn_datatype_fp32"))
                n = 1
                for d in dims:
                    n *= d
                nbytes = named.get(key, int(entry.get("size", 0))) if key else int(entry.get("size", 0))
                shared = bool(key) and key in seen_keys
                seen_keys.add(key)
                tensors.append({"where": f"{delegate.id}", "key": key, "dtype": dtype, "shape": dims, "elements": n,
                                "bytes": 0 if shared else nbytes, "shared_with_earlier": shared,
                                "role": _role(dims, dtype)})
    described = _constant_tensors(program)
    for i, buf in enumerate(program.constant_buffer):
        if i and len(buf.storage):
            dtype, dims = described.get(i, ("?", []))
            n = int(np.prod(dims)) if dims else 0
            tensors.append({"where": "program constant buffer (a delegate input)", "key": f"constant {i}",
                            "dtype": dtype, "shape": dims, "elements": n, "bytes": len(buf.storage),
                            "shared_with_earlier": False, "role": f"delegate-input constant ({dtype})"})
    orphan = {k: b for k, b in named.items() if k not in seen_keys}
    for k, b in orphan.items():
        tensors.append({"where": "named data not referenced by a delegate value", "key": k, "dtype": "?",
                        "shape": [], "elements": 0, "bytes": b, "shared_with_earlier": False, "role": "unreferenced"})
    return _with_summary({"file": str(path), "format": "pte", "bytes": len(data), "delegates": delegates,
                          "tensors": tensors})


def _constant_tensors(program) -> dict[int, tuple[str, list[int]]]:
    """{constant buffer index: (dtype, shape)} from the tensors of the execution plans that point at it."""
    from executorch.exir.scalar_type import ScalarType

    names = {ScalarType.FLOAT: "fp32", ScalarType.CHAR: "int8", ScalarType.BYTE: "uint8", ScalarType.INT: "int32",
             ScalarType.LONG: "int64", ScalarType.HALF: "fp16", ScalarType.BFLOAT16: "bf16"}
    out = {}
    for plan in program.execution_plan:
        for v in plan.values:
            t = v.val
            idx = getattr(t, "data_buffer_idx", 0)
            if idx and hasattr(t, "scalar_type"):
                out[idx] = (names.get(t.scalar_type, str(t.scalar_type)), [int(d) for d in t.sizes])
    return out


def tflite_contents(path: Path | str) -> dict[str, Any]:
    """Tensor-level contents of a .tflite: every buffer-backed tensor with its dtype, shape and bytes."""
    from ai_edge_litert import schema_py_generated as tfl  # type: ignore[attr-defined]

    data = Path(path).read_bytes()
    model = tfl.ModelT.InitFromObj(tfl.Model.GetRootAsModel(data, 0))
    types = {v: k for k, v in vars(tfl.TensorType).items() if not k.startswith("_")}
    tensors: list[dict[str, Any]] = []
    seen: set[int] = set()
    for sg in model.subgraphs:
        for t in sg.tensors:
            buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
            size = 0
            if buf is not None:
                size = len(buf.data) if buf.data is not None else int(buf.size or 0)
            if not size:
                continue
            dtype = types.get(t.type, str(t.type)).lower()
            q = t.quantization
            per_channel = q is not None and q.scale is not None and len(q.scale) > 1
            if dtype == "int8":
                dtype += " (per-channel)" if per_channel else " (per-tensor)"
            dims = [int(d) for d in (t.shape if t.shape is not None else [])]
            shared = t.buffer in seen
            seen.add(t.buffer)
            name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
            n = 1
            for d in dims:
                n *= d
            tensors.append({"where": "subgraph", "key": name, "dtype": dtype, "shape": dims, "elements": n,
                            "bytes": 0 if shared else size, "shared_with_earlier": shared, "role": _role(dims, dtype)})
    return _with_summary({"file": str(path), "format": "tflite", "bytes": len(data), "tensors": tensors})


def _with_summary(out: dict[str, Any]) -> dict[str, Any]:
    by_dtype: dict[str, int] = defaultdict(int)
    by_role: dict[str, int] = defaultdict(int)
    for t in out["tensors"]:
        by_dtype[t["dtype"]] += t["bytes"]
        by_role[t["role"]] += t["bytes"]
    tensor_bytes = sum(by_dtype.values())
    out["summary"] = {"tensor_bytes": tensor_bytes, "other_bytes": out["bytes"] - tensor_bytes,
                      "by_dtype": dict(sorted(by_dtype.items(), key=lambda kv: -kv[1])),
                      "by_role": dict(sorted(by_role.items(), key=lambda kv: -kv[1])),
                      "shared_values": sum(1 for t in out["tensors"] if t["shared_with_earlier"])}
    return out


def contents(path: Path | str) -> dict[str, Any]:
    """pte_contents or tflite_contents by the file's suffix."""
    suffix = Path(path).suffix
    if suffix == ".pte":
        return pte_contents(path)
    if suffix == ".tflite":
        return tflite_contents(path)
    from pocketvit.errors import ExportError

    raise ExportError(f"{path}: contents reads .pte and .tflite files, not '{suffix}'")


def format_contents(c: dict[str, Any], top: int = 20) -> str:
    """A short text table: totals by dtype and role, then the largest tensors."""
    s = c["summary"]
    lines = [(f"{c['file']}: {c['bytes']} bytes, {s['tensor_bytes']} in tensors, {s['other_bytes']} else "
             "(flatbuffers, graph, padding)")]
    for d in c.get("delegates", []):
        lines.append(f"  delegate {d['id']}: {d['nodes']} nodes, graph flatbuffer {d['graph_flatbuffer_bytes']} B")
    lines.append("  by dtype: " + ", ".join(f"{k} {v}" for k, v in s["by_dtype"].items()))
    lines.append("  by role:  " + ", ".join(f"{k} {v}" for k, v in s["by_role"].items()))
    if s["shared_values"]:
        lines.append(f"  {s['shared_values']} value(s) share stored data with an earlier one (counted once)")
    for t in sorted(c["tensors"], key=lambda t: -t["bytes"])[:top]:
        key = re.sub(r"\s+", " ", t["key"])[:60]
        lines.append(f"    {t['bytes']:>8}  {t['dtype']:<20} {t['shape']!s:<16} {key}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", type=Path, nargs="+")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    results = [contents(f) for f in a.files]
    for r in results:
        print(format_contents(r, a.top))
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
