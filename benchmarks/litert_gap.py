"""Where LiteRT loses time against ONNX Runtime: CPU time per inference at 1 thread, interleaved.

Wall-clock ratios at 2 threads on a shared machine mostly measure how each runtime's thread pool
copes with preemption; the process CPU time of a 1-thread run measures the kernels' work. Two uses:

    python -m benchmarks.litert_gap models DIR...   # bench-zoo folders (runs/bench-zoo/files/M):
        # model.onnx vs raw.tflite (litert-torch as is) vs model.tflite (pocketvit's LiteRT rewrites)
        # vs model.pte (pocketvit's ExecuTorch file: the same XNNPACK library behind another runtime)
    python -m benchmarks.litert_gap kernels          # one depthwise conv per kernel size and shape,
        # exported to .onnx and .tflite: XNNPACK's 7x7 (49-tap, multi-pass) kernel vs its 3x3 / 5x5 ones

A benchmark, not a test: print a table (and JSON with --json), assert nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# (channels, height = width, kernel): ConvNeXt-atto's four stages at 224x224 and the 3x3 / 5x5 controls
KERNELS = ((40, 56, 3), (40, 56, 5), (40, 56, 7), (80, 28, 7), (160, 14, 7), (320, 7, 7))


def cpu_ms(runners: dict[str, Callable[[], Any]], runs: int, warmup: int = 3) -> dict[str, dict[str, float]]:
    """Median process CPU time and wall time (ms) per call, rounds interleaved (order reversed every other)."""
    for run in runners.values():
        for _ in range(warmup):
            run()
    cpu: dict[str, list[float]] = {k: [] for k in runners}
    wall: dict[str, list[float]] = {k: [] for k in runners}
    keys = list(runners)
    gc.disable()
    try:
        for i in range(runs):
            for k in keys if i % 2 == 0 else keys[::-1]:
                c0, w0 = time.process_time(), time.perf_counter()
                runners[k]()
                cpu[k].append((time.process_time() - c0) * 1e3)
                wall[k].append((time.perf_counter() - w0) * 1e3)
    finally:
        gc.enable()
    return {k: {"cpu_ms": float(np.median(cpu[k])), "wall_ms": float(np.median(wall[k]))} for k in keys}


RUNTIMES = {".onnx": "onnx", ".tflite": "litert", ".pte": "executorch"}


def _runner(path: Path, x: np.ndarray) -> Callable[[], Any]:
    from pocketvit.bench.zoo import backend_runner

    return backend_runner(RUNTIMES[path.suffix], str(path), 1, x)


def models(dirs: list[Path], runs: int) -> list[dict[str, Any]]:
    rows = []
    for d in dirs:
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
        files = {"onnx": d / "model.onnx", "litert-raw": d / "raw.tflite", "litert": d / "model.tflite",
                 "executorch": d / "model.pte"}  # the same network on ExecuTorch's XNNPACK, for comparison
        res = cpu_ms({k: _runner(p, x) for k, p in files.items() if p.exists()}, runs)
        rows.append({"model": d.name, **res})
    return rows


def kernels(runs: int, targets: tuple[str, ...] = ("onnx", "litert")) -> list[dict[str, Any]]:
    """One depthwise conv per KERNELS entry exported to each target (no rewrites), CPU time per call."""
    import torch
    from pocketvit.export import export_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for c, h, k in KERNELS:
            torch.manual_seed(0)
            conv = torch.nn.Conv2d(c, c, k, padding=k // 2, groups=c).eval()
            x = torch.randn(1, c, h, h)
            files = {t: export_model(conv, x, t, Path(tmp) / f"{c}_{h}_{k}", name="m", disabled_rewrites=("all",)).path
                     for t in targets}
            rows.append({"model": f"depthwise {k}x{k}, {c} ch, {h}x{h}",
                         **cpu_ms({t: _runner(p, x.numpy()) for t, p in files.items()}, runs)})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    cols = [c for c in ("onnx", "litert-raw", "litert", "executorch") if any(c in r for r in rows)]
    lines = ["| what | " + " | ".join(f"{c} CPU ms" for c in cols) + " |", "|---|" + "---|" * len(cols)]
    for r in rows:
        base = r["onnx"]["cpu_ms"]
        lines.append(f"| {r['model']} | " + " | ".join(
            f"{r[c]['cpu_ms']:.2f} ({r[c]['cpu_ms'] / base:.2f}x)" if c in r else "—" for c in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=("models", "kernels"))
    p.add_argument("dirs", nargs="*", type=Path, help="bench-zoo model folders (models)")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--json", type=Path, help="also write the rows here")
    a = p.parse_args(argv)
    if a.what == "models" and not a.dirs:
        p.error("models needs bench-zoo folders holding model.onnx, raw.tflite and model.tflite")
    rows = models(a.dirs, a.runs) if a.what == "models" else kernels(a.runs)
    print(table(rows))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
