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
import gc
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
from pocketvit.bench.isolated import REWARM_S, isolated, timed
from pocketvit.errors import BundleError

MIN_RUNS = 50
METHODS = {
    "interleaved": "one process; rounds calling every runner once in a fresh random order; GC off while timing; "
                   "median and p90 per runner",
    "isolated": "each runner in its own process; rounds asking every process in a fresh random order for a block "
                f"of calls (after at least {REWARM_S * 1e3:.0f} ms of untimed calls), a pause after each block; GC off; "
                "median and p90 per runner",
}
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


def choose_method(method: str, threads: int) -> str:
    """``auto``: isolated processes with more than one thread (spinning pools), interleaved with one."""
    if method == "auto":
        return "isolated" if threads > 1 else "interleaved"
    if method not in METHODS:
        raise ValueError(f"method must be auto or one of {', '.join(METHODS)}, not {method!r}")
    return method


def time_runners(
    factories: dict[str, Callable[[], Callable[[], Any]]], runs: int, warmup: int, threads: int,
    method: str = "auto", seed: int = 0, returns: dict[str, list[float | None]] | None = None,
) -> dict[str, list[float]]:
    """ms per call of every runner a factory builds: in processes of their own (``isolated``) or built here and
    called in interleaved rounds (``interleaved``); ``auto`` picks by thread count (choose_method)."""
    if choose_method(method, threads) == "isolated":
        return isolated(factories, runs, warmup, seed=seed, returns=returns)
    return interleaved({k: f() for k, f in factories.items()}, runs, warmup, seed=seed, returns=returns)


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


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


def _load_average() -> float | None:
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):  # not on Windows
        return None


def latency_stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "median_ms": float(np.median(a)),
        "p90_ms": float(np.percentile(a, 90)),
        "mean_ms": float(a.mean()),
        "min_ms": float(a.min()),
        "runs": int(a.size),
    }


def interleaved(
    runners: dict[str, Callable[[], Any]], runs: int, warmup: int, seed: int = 0,
    returns: dict[str, list[float | None]] | None = None,
) -> dict[str, list[float]]:
    """Time every runner ``runs`` times in rounds; each round calls every runner once, in a fresh
    seeded random order, so no runner always follows the same one (a runtime whose threads keep
    spinning after a call would otherwise always slow down the same neighbour). ms per call.
    ``returns``, if given, receives what each timed call returned when that is a number."""
    names = list(runners)
    for _ in range(max(0, warmup)):
        for name in names:
            runners[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    rets: dict[str, list[float | None]] = {n: [] for n in names}
    rng = np.random.default_rng(seed)
    gc_was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(runs):
            for i in rng.permutation(len(names)):
                ms, ret = timed(runners[names[i]], 1)
                times[names[i]] += ms
                rets[names[i]] += ret
    finally:
        if gc_was:
            gc.enable()
    if returns is not None:
        returns.update(rets)
    return times


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


def _target_runner(bundle_path: str, target: str, threads: int, exits: bool, image: np.ndarray, color: str,
                   predict: bool) -> Callable[[], Any]:
    """The raw runtime call on the preprocessed image, or (``predict``) ``Predictor.predict(image)`` returning
    the runtime time inside it (ms) so the wrapper's own cost can be paired out."""
    from pocketvit.runtime import load

    p = load(bundle_path, target=target, num_threads=threads, warmup=0, use_exits=exits)
    if predict:
        def run_predict():
            p.predict(image, input_color=color)
            return p.last_latency_ms

        return run_predict
    x = p.preprocess(image, input_color=color)
    raw = p.backend.run if p.backend.has_forward else p.run
    return lambda: raw(x)


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
) -> dict[str, Any]:
    """Benchmark a bundle's targets and eager torch; returns a JSON-able dict.

    NotRunError when no target of the bundle can run here (nothing but eager torch would be timed), unless
    ``allow_unrun``.

    ``method``: ``interleaved`` (one process, every runner called once per round in a random order),
    ``isolated`` (each runner in its own process, blocks of calls in turn, see bench/isolated.py), or
    ``auto`` (isolated with more than one thread: in one process, a runtime's spinning worker threads
    slow down the next one; interleaved with one thread, where nothing spins).
    With `exits` (and a bundle with an early-exit program) predict:<target> runs the exit chain on the
    benchmark image; the raw <target> row stays the unsegmented model's forward."""
    import torch

    if runs < MIN_RUNS:
        raise ValueError(f"runs must be at least {MIN_RUNS} (median and p90 need enough samples)")
    explicit = bool(targets)
    threads = int(threads or default_threads())
    method = choose_method(method, threads)
    bundle, chosen = open_bundle(bundle_path, targets)
    spec = bundle.input_spec
    color = input_color(spec)
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (spec["height"], spec["width"], spec["channels"]), dtype=np.uint8)
    root = str(bundle.source)

    torch.set_num_threads(threads)
    entries: dict[str, dict[str, Any]] = {}
    factories: dict[str, Callable[[], Callable[[], Any]]] = {}
    wrapper_pairs: dict[str, tuple[str, str]] = {}
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
        for name, predict in ((t, False), (f"predict:{t}", True)):
            factories[name] = functools.partial(_target_runner, root, t, threads, exits, image, color, predict)
        wrapper_pairs[t] = (f"predict:{t}", t)
        entries[t] = entry

    if not wrapper_pairs and not allow_unrun:
        from pocketvit.bench.parity import nothing_ran_message
        from pocketvit.errors import NotRunError

        raise NotRunError(nothing_ran_message(str(bundle.source), {t: entries[t].get("note") for t in chosen}, "timed"))
    load = _load_average()
    if load is not None and load >= 0.75 * (os.cpu_count() or 1):
        notes.append(
            f"this machine was busy when the run started (load average {load:.1f} on {os.cpu_count()} CPUs): "
            "latencies, multi-threaded ones above all, are noisy; compare ratios within one run"
        )
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

    wrapper = {}
    for t, (pred_name, raw_name) in wrapper_pairs.items():
        total = np.asarray(times[pred_name])
        inside = np.asarray(inner[pred_name], dtype=float)
        over = float(np.median(total - inside))
        rm = float(np.median(times[raw_name]))
        wrapper[t] = {
            "predict_median_ms": float(np.median(total)),
            "predict_p90_ms": float(np.percentile(total, 90)),
            "run_median_ms": rm,
            "overhead_ms": over,
            "overhead_pct": 100.0 * over / rm if rm > 0 else None,
        }

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
            "what": "median over calls of Predictor.predict(image) minus the runtime call inside it "
                    "(preprocessing + postprocessing + bookkeeping); overhead_pct is that over the median "
                    "of backend.run on the preprocessed input",
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
