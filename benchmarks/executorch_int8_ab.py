"""Is ExecuTorch int8 faster than pocketvit's own ExecuTorch fp32, and what does each int8 choice buy?

    python -m benchmarks.executorch_int8_ab convnext_atto fastvit_t8 --off float_depthwise --runs 300
    python -m benchmarks.executorch_int8_ab efficientnet_b0 --no-rewrite silu-as-sigmoid-mul

Per timm model (random weights, BatchNorm re-estimated, the parity inputs and random calibration images of
bench-zoo, zoo.zoo_inputs): ``fp32`` (export_executorch, every rewrite), ``int8`` (quantize_export with the default
ExecuTorchInt8 config, what the ``executorch-int8`` target writes) and ``int8-no-FIELD`` per --off (that
boolean config field switched off); top-1 agreement and max abs diff of each file vs eager fp32 on the 16
inputs, delegate calls / nodes outside, then the median process CPU time per call at 1 thread (rounds
interleaved, bench/litert_gap.cpu_ms; at more threads wall time, each file in its own process:
executorch_ab.time_files) and each
file's speed-up over fp32; ``int8-no-NAME`` per --no-rewrite (that rewrite left out before int8). A benchmark, not a test: prints a table (JSON with --json), asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any


def int8_ab(name: str, off: list[str], work: Path, *, runs: int, threads: int, size: int = 224,
            no_rewrite: tuple[str, ...] = ()) -> dict[str, Any]:
    import torch
    from pocketvit.bench.zoo import zoo_inputs
    from pocketvit.export.executorch import export_executorch
    from pocketvit.export.quantize import config_for, quantize_export

    from benchmarks.executorch_ab import check_files, time_files

    torch.set_num_threads(threads)
    model, x, calib, ref = zoo_inputs(name, size)
    files = {"fp32": export_executorch(model, x[:1], work / "fp32.pte", model_name=name),
             "int8": quantize_export(model, x[:1], calib, config_for("executorch-int8"), work / "int8.pte",
                                     model_name=name)}
    for field in off:
        files[f"int8-no-{field}"] = quantize_export(model, x[:1], calib, config_for("executorch-int8", **{field: False}),
                                                    work / f"int8-no-{field}.pte", model_name=name)
    for r in no_rewrite:
        files[f"int8-no-{r}"] = quantize_export(model, x[:1], calib, config_for("executorch-int8", no_rewrite=(r,)),
                                                work / f"int8-no-{r}.pte", model_name=name)
    row: dict[str, Any] = {"model": name, "threads": threads, "runs": runs,
                           "variants": check_files(files, x, ref, threads, ("rewrites", "float_depthwise"))}
    times = time_files(files, x[:1].numpy(), runs, threads)
    key = "cpu_ms" if threads == 1 else "wall_ms"
    for variant, t in times.items():
        row["variants"][variant] |= t | {"speedup_vs_fp32": times["fp32"][key] / t[key]}
    return row


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| model | threads | variant | ms (CPU at 1 thread, else wall) | speed-up vs fp32 | calls / outside "
            "| float depthwise | max abs diff | top-1 vs eager |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        key = "cpu_ms" if r["threads"] == 1 else "wall_ms"
        for v, e in r["variants"].items():
            lines.append(f"| {r['model']} | {r['threads']} | {v} | {e[key]:.2f} | {e['speedup_vs_fp32']:.2f}x "
                         f"| {e['delegate_calls']} / {e['nodes_outside']} | {e.get('float_depthwise') or '—'} "
                         f"| {e['parity']['max_abs_diff']:.1e} | {e['parity']['top1_agreement']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from pocketvit.export.quantize.configs import ExecuTorchInt8

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="+", help="timm model names")
    switches = [f for f, v in ExecuTorchInt8.__dataclass_fields__.items() if v.type in ("bool", bool)]
    p.add_argument("--off", action="append", default=[], choices=switches,
                   help="an ExecuTorchInt8 switch to turn off in one more int8 variant (repeatable)")
    p.add_argument("--no-rewrite", action="append", default=[], help="a rewrite (export/rewrites.py) to leave out "
                   "of one more int8 variant (repeatable)")
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the rows here")
    a = p.parse_args(argv)
    from pocketvit.export.rewrites import check_rewrite_names

    check_rewrite_names(a.no_rewrite)
    rows = []
    for name in a.models:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(int8_ab(name, a.off, Path(tmp), runs=a.runs, threads=a.threads, no_rewrite=tuple(a.no_rewrite)))
        print(table(rows[-1:]), flush=True)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
