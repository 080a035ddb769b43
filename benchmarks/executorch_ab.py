"""Does an ExecuTorch (or LiteRT) rewrite pay? One model exported with every rewrite and once per rewrite switched
off, timed against ONNX Runtime (the reference) in one run:

    python -m benchmarks.executorch_ab convnext_atto --rewrite layernorm2d-as-conv --threads 1 --runs 60
    python -m benchmarks.executorch_ab ghostnetv2_100 --runtime litert --rewrite nearest-resize-as-gather
    python -m benchmarks.executorch_ab --kernels   # one depthwise conv per kernel size: ExecuTorch vs ONNX

Per timm model (random weights, BatchNorm re-estimated, as bench-zoo): ``onnx``, ``executorch`` (every
rewrite) and ``executorch-no-NAME`` per --rewrite; parity of each .pte vs eager on 16 inputs, delegate
calls / nodes outside, then median wall and process CPU time per call (bench/litert_gap.cpu_ms; at more
than 1 thread wall time only, each file in its own process, blocks in a random order per round) and the ratios to ONNX Runtime. A benchmark, not a test: prints a table (and JSON with --json), asserts nothing.
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
from pathlib import Path
from typing import Any


def ab_model(name: str, rewrites: list[str], work: Path, *, runs: int, threads: int, size: int = 224,
             runtime: str = "executorch") -> dict[str, Any]:
    import torch
    from pocketvit.bench.zoo import zoo_inputs
    from pocketvit.export import export_model
    from pocketvit.export.executorch import export_executorch
    from pocketvit.export.litert import export_litert

    export, ext = {"executorch": (export_executorch, "pte"), "litert": (export_litert, "tflite")}[runtime]
    torch.set_num_threads(threads)
    model, x, _, ref = zoo_inputs(name, size)
    files = {"onnx": export_model(model, x[:1], "onnx", work, name="model", model_name=name),
             runtime: export(model, x[:1], work / f"all.{ext}", model_name=name)}
    for r in rewrites:
        files[f"{runtime}-no-{r}"] = export(model, x[:1], work / f"no-{r}.{ext}", model_name=name,
                                            disabled_rewrites=(r,))
    row: dict[str, Any] = {"model": name, "threads": threads, "runs": runs,
                           "variants": check_files(files, x, ref, threads, ("outside_ops", "rewrites"))}
    times = time_files(files, x[:1].numpy(), runs, threads)
    for variant, t in times.items():
        row["variants"][variant] |= t | {k.replace("_ms", "_vs_onnx"): t[k] / times["onnx"][k] for k in t}
    return row


def check_files(files: dict[str, Any], x, ref, threads: int, keys: tuple[str, ...] = ()) -> dict[str, dict]:
    """{variant: parity of the file vs eager `ref` on `x`, plus its delegation (calls / nodes outside, `keys`)}."""
    from pocketvit.bench.measure import parity
    from pocketvit.runtime.backends import open_backend

    out = {}
    for variant, f in files.items():
        b = open_backend(f.runtime, f.path, num_threads=threads)
        out[variant] = {"parity": parity(b.run(x.numpy()), ref)}
        b.close()
        if f.runtime in ("executorch", "litert"):  # LiteRT says ops_outside where ExecuTorch says nodes_outside
            out[variant] |= {k: f.info.get(k) for k in ("delegate_calls", "nodes_outside", "ops_outside", *keys)
                             if k in f.info}
    return out


def time_files(files: dict[str, Any], x1, runs: int, threads: int) -> dict[str, dict[str, float]]:
    """{variant: {"wall_ms", "cpu_ms"}} per call on `x1`: at 1 thread median process CPU time and wall time, rounds
    interleaved in this process (bench/litert_gap.cpu_ms); at more threads median wall time only, each file in a
    process of its own, blocks in a random order per round (bench/isolated.py): in one process ONNX Runtime's
    spinning workers slow whichever runner follows it."""
    import numpy as np
    from pocketvit.bench.isolated import isolated
    from pocketvit.bench.zoo import backend_runner

    from benchmarks.litert_gap import cpu_ms

    factories = {v: functools.partial(backend_runner, f.runtime, str(f.path), threads, x1) for v, f in files.items()}
    if threads == 1:
        return cpu_ms({v: make() for v, make in factories.items()}, runs)
    return {k: {"wall_ms": float(np.median(v)), "cpu_ms": float("nan")}
            for k, v in isolated(factories, runs, warmup=3).items()}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | threads | variant | wall vs ONNX | CPU vs ONNX | calls / outside | max abs diff | top-1 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for v, e in r["variants"].items():
            outside = e.get("nodes_outside", e.get("ops_outside"))
            deleg = f"{e['delegate_calls']} / {outside}" if "delegate_calls" in e else "—"
            lines.append(f"| {r['model']} | {r['threads']} | {v} | {e['wall_vs_onnx']:.3f}x | {e['cpu_vs_onnx']:.3f}x "
                         f"| {deleg} | {e['parity']['max_abs_diff']:.1e} | {e['parity']['top1_agreement']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="*", help="timm model names")
    p.add_argument("--kernels", action="store_true", help="time single depthwise convs (3x3, 5x5, 7x7) instead")
    p.add_argument("--rewrite", action="append", default=[], help="rewrite to switch off in a variant (repeatable)")
    p.add_argument("--runtime", choices=("executorch", "litert"), default="executorch", help="whose rewrites")
    p.add_argument("--size", type=int, default=224, help="input height and width")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the rows here")
    a = p.parse_args(argv)
    from pocketvit.export.rewrites import check_rewrite_names

    check_rewrite_names(a.rewrite)
    if a.kernels:
        from pocketvit.bench import litert_gap

        print(litert_gap.table(litert_gap.kernels(a.runs, ("onnx", "executorch"))))
        return
    rows = []
    for name in a.models:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(ab_model(name, a.rewrite, Path(tmp), runs=a.runs, threads=a.threads, size=a.size,
                                 runtime=a.runtime))
        print(table(rows[-1:]), flush=True)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
