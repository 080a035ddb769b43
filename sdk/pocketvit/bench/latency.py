"""`pocketvit bench`: every runtime of a bundle (and eager torch) timed in one run.

Method (batch 1, the same thread count for every runtime), one of:
- ``interleaved`` (one process): each runner is warmed up, then timed in rounds that call every
  runner once, in a fresh random order each round, so background noise and cache effects hit every
  runtime alike; GC is off while timing;
- ``isolated`` (bench/isolated.py): each runner in its own process, asked for short blocks of calls
  in turn (random order per round, a pause after each block), so no runtime's spinning worker threads
  steal the cores from the next one — on a machine with few cores that bias is larger than the
  differences being measured (ExecuTorch 2x slower right after a spinning ONNX Runtime call on 2 cores);
- ``auto`` (default): isolated with more than one thread, interleaved with one;
then median and p90 over ``runs`` calls (at least 50), and
- this machine's fp32 peak: a 2048x2048 fp32 matmul in torch with the same threads (median of a few);
  each runtime's achieved GFLOP/s (model GFLOPs / median) as a fraction of it;
- wrapper overhead: ``Predictor.predict(image)`` (preprocessing, inference, postprocessing) minus
  the runtime call inside that same predict (paired, so noise cancels), as a share of the raw
  ``backend.run`` on the already preprocessed input (timed on its own in the same rounds).
"""

from __future__ import annotations

import functools
import os
import platform
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

import numpy as np

from pocketvit.bench._common import (
    eager_model,
    eager_spec,
    has_source,
    input_color,
    open_bundle,
    open_target,
)
from pocketvit.bench.timing import (
    METHODS,
    MIN_RUNS,
    WRAPPER_WHAT,
    bench_image,
    busy_note,
    choose_method,
    default_threads,
    interleaved,
    latency_stats,
    target_factories,
    target_runner,
    time_runners,
    wrapper_overhead,
)
from pocketvit.errors import BundleError

__all__ = ["METHODS", "MIN_RUNS", "bench_bundle", "choose_method", "default_threads", "display_name", "interleaved",
           "latency_stats", "machine_peak_gflops", "time_runners"]
PEAK_N = 2048
RUNTIME_PACKAGES = {
    "torch": "torch",
    "onnx": "onnxruntime",
    "executorch": "executorch",
    "litert": "ai-edge-litert",
    "coreml": "coremltools",
}
RUNTIME_NAMES = {
    "torch": "eager torch",
    "onnx": "ONNX Runtime",
    "executorch": "ExecuTorch",
    "litert": "LiteRT",
    "coreml": "Core ML",
}


def timing(ms: list[float], method: str, threads: int | None, warmup: int) -> dict[str, Any]:
    """A latency figure as report.json, the manifest and the model card record it: median and p90 (ms) and how it
    was timed (method, threads, runs, warm-up, batch 1)."""
    a = np.asarray(ms)
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)), "runs": int(a.size),
            "threads": threads, "method": method, "warmup": warmup, "batch": 1}


def file_runner(runtime: str, path: str, threads: int | None, x: np.ndarray) -> Callable[[], Any]:
    """One exported file's runtime call on ``x`` (built where it runs: this process or a benchmark process)."""
    from pocketvit.runtime import open_backend

    backend = open_backend(runtime, path, num_threads=threads)
    return lambda: backend.run(x)


def file_latency(runtime: str, path: str | os.PathLike, x: np.ndarray, runs: int, threads: int, warmup: int = 5,
                 method: str = "auto") -> dict[str, Any]:
    """Batch-1 latency of one exported file on its runtime, timed as `pocketvit bench` times it (``auto``: in a
    process of its own with more than one thread, in this one with one): the build's verify stages use it."""
    factory = functools.partial(file_runner, runtime, os.fspath(path), threads, np.ascontiguousarray(x[:1]))
    ms = time_runners({"file": factory}, runs, warmup, threads, method)["file"]
    return timing(ms, choose_method(method, threads), threads, warmup)


def time_targets(bundle_path: str | os.PathLike, targets: list[str], runs: int, threads: int, warmup: int = 3,
                 method: str = "auto", seed: int = 0) -> dict[str, dict[str, Any]]:
    """Batch-1 latency of each target's runtime call on one seeded random image of the input size, all timed in one
    run by ``method`` (as `pocketvit bench` does): `pocketvit export` puts these figures in the model card."""
    bundle = open_bundle(bundle_path, targets)[0]
    spec = bundle.input_spec
    image = np.random.default_rng(seed).integers(0, 256, (spec["height"], spec["width"], spec["channels"]),
                                                 dtype=np.uint8)
    root = str(bundle.source)
    factories = {t: functools.partial(target_runner, root, t, threads, False, image, input_color(spec), False)
                 for t in targets}
    times = time_runners(factories, runs, warmup, threads, method, seed=seed)
    return {t: timing(ms, choose_method(method, threads), threads, warmup) for t, ms in times.items()}




def machine_peak_gflops(threads: int, n: int = PEAK_N, repeats: int = 5, warmup: int = 2) -> dict[str, Any]:
    """fp32 GFLOP/s of an n x n matmul in torch with ``threads`` threads (median of ``repeats``)."""
    import torch

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g)
    b = torch.randn(n, n, generator=g)
    out = torch.empty(n, n)
    for _ in range(warmup):
        torch.mm(a, b, out=out)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    return {
        "gflops_per_s": 2.0 * n**3 / med / 1e9,
        "method": f"{n}x{n} fp32 matmul in torch, {threads} thread(s), median of {repeats}",
        "threads": threads,
    }


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        if pkg == "ai-edge-litert":
            return _version("tflite-runtime")
        return None


def _eager_runner(bundle_path: str, threads: int, image: np.ndarray, color: str) -> Callable[[], Any]:
    """Eager torch on the benchmark image (built where it runs: this process or a benchmark process)."""
    import torch

    from pocketvit.runtime import Bundle, prepare_image, preprocess_array

    torch.set_num_threads(threads)
    bundle = Bundle.open(bundle_path)
    spec = bundle.input_spec
    model = eager_model(bundle)
    xe = torch.from_numpy(preprocess_array(prepare_image(image, spec, color), eager_spec(spec), "float-nchw"))

    def run_eager():
        with torch.no_grad():
            return model(xe)

    return run_eager


def bench_bundle(
    bundle_path: str | os.PathLike,
    targets: list[str] | None = None,
    runs: int = 100,
    threads: int | None = None,
    warmup: int = 10,
    seed: int = 0,
    peak_repeats: int = 5,
    exits: bool = True,
    method: str = "auto",
    allow_unrun: bool = False,
    strict: bool | None = None,
) -> dict[str, Any]:
    """Benchmark a bundle's targets and eager torch; returns a JSON-able dict.

    NotRunError when no target of the bundle can run here (nothing but eager torch would be timed), unless
    ``allow_unrun``.

    ``method``: ``interleaved`` (one process, every runner called once per round in a random order),
    ``isolated`` (each runner in its own process, blocks of calls in turn, see bench/isolated.py), or
    ``auto`` (isolated with more than one thread: in one process, a runtime's spinning worker threads
    slow down the next one; interleaved with one thread, where nothing spins).
    With `exits` (and a bundle with an early-exit program) predict:<target> runs the exit chain on the
    benchmark image; the raw <target> row stays the unsegmented model's forward.
    A target whose runtime is not installed here is an error when ``strict`` (default: when ``targets`` are
    named), else a row with a note."""
    import torch

    if runs < MIN_RUNS:
        raise ValueError(f"runs must be at least {MIN_RUNS} (median and p90 need enough samples)")
    explicit = bool(targets) if strict is None else strict
    threads = int(threads or default_threads())
    method = choose_method(method, threads)
    bundle, chosen = open_bundle(bundle_path, targets)
    spec = bundle.input_spec
    color = input_color(spec)
    image = bench_image(spec, seed)
    root = str(bundle.source)

    torch.set_num_threads(threads)
    entries: dict[str, dict[str, Any]] = {}
    factories: dict[str, Callable[[], Callable[[], Any]]] = {}
    timed_targets: list[str] = []
    notes: list[str] = []

    gflops = None
    if has_source(bundle):
        try:
            model = eager_model(bundle)
        except BundleError as e:
            notes.append(f"eager torch not run: {e}")
        else:
            from pocketvit.models.stats import count_gflops

            gflops = float(count_gflops(model, (spec["channels"], spec["height"], spec["width"])))
            del model
            factories["eager"] = functools.partial(_eager_runner, root, threads, image, color)
            entries["eager"] = {"runtime": "torch", "target": None, "precision": "fp32",
                                "version": _version("torch")}
    else:
        notes.append("eager torch not run: the bundle has no 'source' block / reference weights")

    for t in chosen:
        info = bundle.file_info(t)
        rt = info["runtime"]
        entry = {"runtime": rt, "target": t, "precision": info.get("precision", "fp32"),
                 "version": _version(RUNTIME_PACKAGES.get(rt, rt))}
        p, note = open_target(bundle, t, threads, explicit, use_exits=exits)  # can it run here? (then closed)
        if p is None:
            entries[t] = entry | {"note": note}
            continue
        entry["runtime_info"] = p.runtime_info()
        notes += [f"{t}: fallback — {fb}" for fb in p.fallbacks]
        if p.exits:
            notes.append(f"{t}: predict:{t} runs the early-exit chain (the benchmark image decides where it stops), "
                         f"the raw row the unsegmented model; --no-exits times the full model in both")
        p.close()
        timed_targets.append(t)
        entries[t] = entry
    factories |= target_factories(root, timed_targets, threads, exits, image, color)

    if not timed_targets and not allow_unrun:
        from pocketvit.bench.parity import nothing_ran_message
        from pocketvit.errors import NotRunError

        raise NotRunError(nothing_ran_message(str(bundle.source), {t: entries[t].get("note") for t in chosen}, "timed"))
    load, busy = busy_note()
    if busy:
        notes.append(busy)
    peak = machine_peak_gflops(threads, repeats=peak_repeats)
    inner: dict[str, list[float | None]] = {}
    times = time_runners(factories, runs, warmup, threads, method, seed=seed, returns=inner)

    for name, ms in times.items():
        if name.startswith("predict:"):
            continue
        entries[name].update(latency_stats(ms))
        if gflops is not None:
            achieved = gflops / (entries[name]["median_ms"] / 1e3)
            entries[name]["achieved_gflops_per_s"] = achieved
            entries[name]["fraction_of_peak"] = achieved / peak["gflops_per_s"]

    ref = _onnx_reference(entries)
    for e in entries.values():
        if "median_ms" in e:
            e["ratio_to_onnx"] = e["median_ms"] / entries[ref]["median_ms"] if ref else None

    wrapper = wrapper_overhead(times, inner, timed_targets)

    return {
        "bundle": str(bundle.source),
        "name": bundle.name,
        "batch": 1,
        "threads": threads,
        "runs": runs,
        "warmup": warmup,
        "method": method,
        "method_text": METHODS[method],
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor() or None,
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1min": load,
            "peak": peak,
        },
        "model": {
            "arch": (bundle.manifest.get("source") or {}).get("arch"),
            "gflops": gflops,
            "input": [spec["height"], spec["width"], spec["channels"]],
        },
        "reference": ref,
        "results": entries,
        "wrapper_overhead": {
            "image": f"{spec['height']}x{spec['width']}x{spec['channels']} uint8 ({color}), the model's input size",
            "what": WRAPPER_WHAT,
            "targets": wrapper,
        },
        "notes": notes,
    }


def _onnx_reference(entries: dict[str, dict[str, Any]]) -> str | None:
    """The ONNX Runtime entry ratios are taken against: target 'onnx', else the first fp32 onnx one."""
    timed = {k: e for k, e in entries.items() if "median_ms" in e}
    if "onnx" in timed:
        return "onnx"
    for k, e in timed.items():
        if e["runtime"] == "onnx" and "int8" not in str(e.get("precision")):
            return k
    for k, e in timed.items():
        if e["runtime"] == "onnx":
            return k
    return None


def display_name(name: str, entry: dict[str, Any]) -> str:
    if name == "eager":
        return "eager torch"
    rt = RUNTIME_NAMES.get(entry["runtime"], entry["runtime"])
    return f"{rt} ({name})"
