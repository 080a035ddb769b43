"""How far int8 can go on a small model: where an ExecuTorch int8 file's time and bytes go, next to fp32's.

    python -m benchmarks.int8_floor BUNDLE [--runs 1000] [--threads 1] [--json OUT]

Time (one process, one interleaved run, medians):
- the *call floor*: a program with the bundle's input and output shapes and one delegated Linear, so the
  cost of a call (Python binding, method execute, delegate entry) with almost no arithmetic; the *node
  floor*: the same with as many delegated nodes as the int8 graph has (cheap elementwise ops), so the cost
  of walking that many XNNPACK operators;
- fp32 and int8 files of the bundle, and the int8 file profiled op by op (XNNPACK's own per-operator events
  through ETDump; trimmed means): the time in int8 kernels (QS8/QC8 GEMMs and convolutions, int8 lookup
  tables) vs float kernels int8 leaves in place (softmax, attention batch matmuls, LayerNorm statistics)
  vs conversions and the rest;
- the bound: int8's median minus its int8-kernel time is what int8 cannot reduce however fast those
  kernels get; over fp32's median it is the best latency ratio this graph can reach. ETDump's clock ticks
  in microseconds here, so ops under 1 us (converts, reshapes, transposes, elementwise) read ~0 and their
  cost stays in that remainder, which the node floor measures directly.

Bytes (contents.py): the int8 file's tensors (int8 weights and tables, int32 biases, the few float
constants) without per-channel scale arrays, plus only the structure the fp32 file needs as well (its graph
and program flatbuffers), give the smallest int8/fp32 size ratio reachable without changing the graph.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

INT8_TAGS = ("QS8", "QC8", "QD8", "QU8", "X8")


def kernel_class(event: str, int8_program: bool) -> str:
    """'int8', 'float', 'convert' or 'other' for an XNNPACK operator event name ("Fully Connected (NC, QS8,
    QC8W) GEMM #3"). XNNPACK names its int8 lookup-table unary ops (GELU in an int8 graph) 'Invalid Unary Op'."""
    if event.startswith("Convert"):
        return "convert"
    tags = re.findall(r"\(([^)]*)\)", event)
    kinds = {k.strip() for t in tags for k in t.split(",")}
    if kinds & set(INT8_TAGS) or (int8_program and event.startswith("Invalid Unary Op")):
        return "int8"
    if kinds & {"F32", "X32", "F16"} or not int8_program:
        return "float"
    return "other"


def profile_ops(path: Path, runs: int, threads: int) -> dict[str, dict[str, float]]:
    """{operator kind: {us, count}} per call, trimmed means (the fastest 80% of samples) of ETDump events."""
    import torch
    from executorch.devtools import Inspector
    from executorch.extension.pybindings.portable_lib import _load_for_executorch, _unsafe_reset_threadpool

    _unsafe_reset_threadpool(threads)
    module = _load_for_executorch(str(path), enable_etdump=True, debug_buffer_size=0)
    shape = [int(d) for d in module.method_meta("forward").input_tensor_meta(0).sizes()]
    x = torch.randn(*shape)
    for _ in range(runs):
        module.forward([x])
    out: dict[str, dict[str, float]] = collections.defaultdict(lambda: {"us": 0.0, "count": 0})
    with tempfile.TemporaryDirectory() as d:
        etdump = Path(d) / "profile.etdp"
        module.write_etdump_result_to_file(str(etdump))
        inspector = Inspector(etdump_path=str(etdump))
        for block in inspector.event_blocks:
            if block.name != "Execute":
                continue
            for e in block.events:
                if not e.perf_data:
                    continue
                raw = np.sort(np.asarray(e.perf_data.raw, dtype=float))
                kind = re.sub(r" #\d+$", "", e.name)
                out[kind]["us"] += float(raw[: max(1, int(len(raw) * 0.8))].mean()) * 1000.0
                out[kind]["count"] += 1
    return dict(out)


def _floor_program(shape: list[int], classes: int, nodes: int, path: Path) -> Path:
    """A program with the bundle's input and output shapes: `nodes - 1` cheap elementwise ops on the input
    (alternately + and x a constant) then one Linear, all in one XNNPACK delegate; ~no arithmetic."""
    import torch
    from pocketvit.export.executorch import export_executorch

    class NodeFloor(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(int(np.prod(shape[1:])), classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x.flatten(1)
            for i in range(nodes - 1):
                y = y + 0.001 if i % 2 == 0 else y * 0.999
            return self.fc(y)

    export_executorch(NodeFloor().eval(), torch.zeros(*shape), path, prepare=False)
    return path


def _time(paths: dict[str, Path], shape: list[int], runs: int, threads: int) -> dict[str, float]:
    from pocketvit.bench.latency import interleaved
    from pocketvit.runtime.backends.executorch import ExecuTorchBackend

    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    backends = {k: ExecuTorchBackend(p, num_threads=threads) for k, p in paths.items()}
    times = interleaved({k: (lambda b=b: b.run(x)) for k, b in backends.items()}, runs, warmup=50)
    for b in backends.values():
        b.close()
    return {k: float(np.median(v)) * 1000.0 for k, v in times.items()}


def _size_floor(fp32: dict[str, Any], int8: dict[str, Any]) -> dict[str, Any]:
    """The int8 file's tensors without per-channel scale arrays, plus only the structure fp32 needs too."""
    roles = int8["summary"]["by_role"]
    payload = int8["summary"]["tensor_bytes"] - roles.get("per-channel scales (fp32)", 0)
    fp32_structure = fp32["summary"]["other_bytes"]
    floor = payload + fp32_structure
    return {"fp32_bytes": fp32["bytes"], "int8_bytes": int8["bytes"], "ratio": int8["bytes"] / fp32["bytes"],
            "int8_payload_bytes": payload, "fp32_structure_bytes": fp32_structure,
            "int8_structure_bytes": int8["summary"]["other_bytes"], "int8_by_role": roles,
            "floor_bytes": floor, "floor_ratio": floor / fp32["bytes"]}


def analyse(bundle: Path, runs: int = 1000, threads: int = 1, profile_runs: int = 300) -> dict[str, Any]:
    """Time and size analysis of the bundle's executorch and executorch-int8 files (see the module doc)."""
    from pocketvit.errors import BundleError
    from pocketvit.export.quantize.contents import pte_contents

    manifest = json.loads((bundle / "manifest.json").read_text())
    files = manifest["files"]
    missing = [t for t in ("executorch", "executorch-int8") if t not in files]
    if missing:
        raise BundleError(f"{bundle}: no {' or '.join(missing)} file; export with --target executorch "
                          "--quantize int8 (or a recipe with executorch and executorch-int8)")
    paths = {t: bundle / files[t]["path"] for t in ("executorch", "executorch-int8")}
    spec = manifest["input"]
    shape = [1, int(spec["channels"]), int(spec["height"]), int(spec["width"])]
    contents = {t: pte_contents(paths[t]) for t in ("executorch", "executorch-int8")}
    nodes = sum(d["nodes"] for d in contents["executorch-int8"]["delegates"])
    with tempfile.TemporaryDirectory() as d:
        paths["call floor"] = _floor_program(shape, len(manifest["labels"]), 1, Path(d) / "call.pte")
        paths["node floor"] = _floor_program(shape, len(manifest["labels"]), nodes, Path(d) / "nodes.pte")
        medians = _time(paths, shape, runs, threads)
    ops = {t: profile_ops(paths[t], profile_runs, threads) for t in ("executorch", "executorch-int8")}
    by_class: dict[str, dict[str, float]] = {}
    for t, kinds in ops.items():
        acc: dict[str, float] = collections.defaultdict(float)
        for kind, v in kinds.items():
            if kind in ("DELEGATE_CALL", "Method::execute"):
                continue
            acc[kernel_class(kind, t.endswith("int8"))] += v["us"]
        by_class[t] = dict(acc)
    fp32_us, int8_us = medians["executorch"], medians["executorch-int8"]
    int8_kernels = by_class["executorch-int8"].get("int8", 0.0)
    irreducible = max(0.0, int8_us - int8_kernels)
    float_left = by_class["executorch-int8"].get("float", 0.0)
    return {
        "bundle": str(bundle), "threads": threads, "runs": runs,
        "median_us": medians, "latency_ratio": int8_us / fp32_us,
        "call_floor_ratio": medians["call floor"] / fp32_us,
        "kernel_us_by_class": by_class,
        "ops_us": {t: {k: round(v["us"], 2) for k, v in sorted(o.items(), key=lambda kv: -kv[1]["us"])}
                   for t, o in ops.items()},
        "int8_irreducible_us": irreducible, "latency_ratio_bound": irreducible / fp32_us,
        "int8_delegate_nodes": nodes, "node_floor_ratio": medians["node floor"] / fp32_us,
        "node_floor_plus_float_ratio": (medians["node floor"] + float_left) / fp32_us,
        "size": _size_floor(contents["executorch"], contents["executorch-int8"]),
    }


def format_analysis(a: dict[str, Any]) -> str:
    m, s = a["median_us"], a["size"]
    lines = [f"{a['bundle']}: {a['threads']} thread(s), {a['runs']} interleaved runs, medians",
             (f"  fp32 {m['executorch']:.1f} us, int8 {m['executorch-int8']:.1f} us ({a['latency_ratio']:.2f}x), "
             f"call floor {m['call floor']:.1f} us ({a['call_floor_ratio']:.3f}x of fp32)")]
    for t, c in a["kernel_us_by_class"].items():
        lines.append(f"  {t} kernels (profiled, us/call): " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                                       sorted(c.items(), key=lambda kv: -kv[1])))
    lines.append(f"  node floor ({a['int8_delegate_nodes']} delegated nodes like int8's, ~no arithmetic) "
                 f"{m['node floor']:.1f} us = {a['node_floor_ratio']:.2f}x of fp32; plus the float kernels int8 "
                 f"keeps: {a['node_floor_plus_float_ratio']:.2f}x")
    lines.append(f"  int8 time outside int8 kernels: {a['int8_irreducible_us']:.1f} us = "
                 f"{a['latency_ratio_bound']:.2f}x of fp32 (the best ratio if int8 kernels took no time)")
    lines.append(f"  size: int8 {s['int8_bytes']} / fp32 {s['fp32_bytes']} = {s['ratio']:.3f}x; int8 tensors w/o scales "
                 f"{s['int8_payload_bytes']} B + the structure fp32 needs too {s['fp32_structure_bytes']} B = "
                 f"{s['floor_bytes']} B = {s['floor_ratio']:.3f}x (int8's own structure {s['int8_structure_bytes']} B)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    result = analyse(a.bundle, a.runs, a.threads)
    print(format_analysis(result))
    if a.json:
        from pocketvit.runtime.io import atomic_path

        with atomic_path(a.json) as tmp:
            tmp.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
