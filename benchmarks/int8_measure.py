"""Measure a Fashion-MNIST bundle's fp32 and int8 files on their runtimes, in one run:

    python -m benchmarks.int8_measure BUNDLE [--runs 300] [--threads 2] [--target T]... [--json OUT]

Per target: test top-1 over the whole 10k test split (the bundle's own preprocessing, run on the file's
runtime), top-1 agreement with the fp32 file of the same runtime, file size, and batch-1 latency (median,
p90) from one run of every target (bench.latency.time_runners: at more than one thread each file in its own
process, blocks of calls in turn; at one, interleaved rounds in a fresh random order; either way the ratios
int8/fp32 are taken under the same machine load). Core ML files cannot run on Linux.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np


def measure(bundle: Path, runs: int = 300, threads: int = 2, root: str = "/usr/share/datasets/fashion-mnist",
            targets: list[str] | None = None, method: str = "auto") -> dict:
    from pocketvit.bench.latency import choose_method, time_runners
    from pocketvit.data import fashion_mnist
    from pocketvit.progress import progress_bar
    from pocketvit.runtime import load, preprocess_batch

    manifest = json.loads((bundle / "manifest.json").read_text())
    x_test, y_test = fashion_mnist.load_split(root, "test")
    x = preprocess_batch(list(x_test[..., None]), manifest["input"], input_color="GRAY")
    rows: dict[str, dict[str, Any]] = {}
    preds: dict[str, np.ndarray] = {}
    factories = {}
    for t, entry in manifest["files"].items():
        if targets and t not in targets:
            continue
        size = entry["bytes"]
        row: dict[str, Any] = {"precision": entry["precision"], "runtime": entry["runtime"], "bytes": size}
        rows[t] = row
        if entry["runtime"] == "coreml":
            row["note"] = "Core ML cannot execute on Linux (converted and spec-checked only)"
            continue
        if entry.get("input_form", "float-nchw") != "float-nchw":
            # drop-in files take pixels (uint8 NHWC): `pocketvit verify` measures them; int8 vs fp32 is about
            # the float-input files
            row["note"] = f"input form {entry['input_form']}: not measured here (pocketvit verify)"
            continue
        p = load(bundle, target=t, num_threads=threads, warmup=0, use_exits=False)
        out = []
        with progress_bar(f"{t}: test split", len(x)) as advance:
            for i in range(len(x)):
                out.append(p.run(x[i:i + 1]))
                advance(1)
        logits = np.concatenate(out).reshape(len(x), -1)
        preds[t] = logits.argmax(1)
        row["test_top1"] = float((preds[t] == y_test).mean())
        p.close()
        factories[t] = functools.partial(_file_runner, str(bundle), t, threads, x[:1])
    for t, row in rows.items():
        base = t.split("-", 1)[0]
        if t != base and t in preds and base in preds:
            row["agreement_with_fp32"] = float((preds[t] == preds[base]).mean())
            row["top1_drop_points"] = 100 * (rows[base]["test_top1"] - row["test_top1"])
        if t != base and base in rows and row["precision"] == "int8":
            row["size_ratio"] = row["bytes"] / rows[base]["bytes"]
    times = time_runners(factories, runs, 20, threads, method)
    for t, ms in times.items():
        rows[t]["latency_ms"] = {"median": float(np.median(ms)), "p90": float(np.percentile(ms, 90))}
    for t, row in rows.items():
        base = t.split("-", 1)[0]
        if t != base and "latency_ms" in row and "latency_ms" in rows.get(base, {}):
            row["latency_ratio"] = row["latency_ms"]["median"] / rows[base]["latency_ms"]["median"]
    return {"bundle": str(bundle), "test_images": len(x), "runs": runs, "threads": threads,
            "method": choose_method(method, threads), "targets": rows}


def _file_runner(bundle: str, target: str, threads: int, x: np.ndarray):
    from pocketvit.runtime import load

    p = load(bundle, target=target, num_threads=threads, warmup=0, use_exits=False)
    return lambda: p.run(x)


def main(argv: list[str] | None = None) -> None:
    from pocketvit.bench.latency import METHODS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--target", action="append", default=None, help="only these targets (repeatable)")
    ap.add_argument("--method", choices=("auto", *METHODS), default="auto",
                    help="timing method (bench/latency.py): auto = isolated with more than one thread")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    result = measure(a.bundle, a.runs, a.threads, targets=a.target, method=a.method)
    text = json.dumps(result, indent=2)
    if a.json:
        from pocketvit.runtime.io import atomic_path

        with atomic_path(a.json) as tmp:
            tmp.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
