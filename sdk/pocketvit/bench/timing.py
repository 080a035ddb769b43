"""The timing core of `pocketvit bench`, torch-free: numpy, the standard library and pocketvit.runtime only, so
that `bench --device ssh://...` ships it to the device and times there exactly as here (bench/remote.py).

Method (batch 1, the same thread count for every runtime), one of:
- ``interleaved`` (one process): each runner is warmed up, then timed in rounds that call every runner once, in a
  fresh random order each round, so background noise and cache effects hit every runtime alike; GC is off;
- ``isolated`` (bench/isolated.py): each runner in its own process, asked for short blocks of calls in turn;
- ``auto``: isolated with more than one thread, interleaved with one;
then median and p90 over ``runs`` calls (at least 50). ``time_targets`` times a bundle's targets this way, the raw
runtime call and ``Predictor.predict`` side by side, and pairs the two into the wrapper's overhead.
"""

from __future__ import annotations

import functools
import gc
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from pocketvit.bench.isolated import REWARM_S, isolated, timed

MIN_RUNS = 50
METHODS = {
    "interleaved": "one process; rounds calling every runner once in a fresh random order; GC off while timing; "
                   "median and p90 per runner",
    "isolated": "each runner in its own process; rounds asking every process in a fresh random order for a block "
                f"of calls (after at least {REWARM_S * 1e3:.0f} ms of untimed calls), a pause after each block; GC off; "
                "median and p90 per runner",
}
WRAPPER_WHAT = ("median over calls of Predictor.predict(image) minus the runtime call inside it (preprocessing + "
                "postprocessing + bookkeeping); overhead_pct is that over the median of backend.run on the "
                "preprocessed input")


def choose_method(method: str, threads: int) -> str:
    """``auto``: isolated processes with more than one thread (spinning pools), interleaved with one."""
    if method == "auto":
        return "isolated" if threads > 1 else "interleaved"
    if method not in METHODS:
        raise ValueError(f"method must be auto or one of {', '.join(METHODS)}, not {method!r}")
    return method


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def load_average() -> float | None:
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):  # not on Windows
        return None


def busy_note() -> tuple[float | None, str | None]:
    """(1-minute load average, a note when the machine was busy as the run started)."""
    load = load_average()
    if load is not None and load >= 0.75 * (os.cpu_count() or 1):
        return load, (f"this machine was busy when the run started (load average {load:.1f} on {os.cpu_count()} "
                      "CPUs): latencies, multi-threaded ones above all, are noisy; compare ratios within one run")
    return load, None


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


def time_runners(
    factories: dict[str, Callable[[], Callable[[], Any]]], runs: int, warmup: int, threads: int,
    method: str = "auto", seed: int = 0, returns: dict[str, list[float | None]] | None = None,
) -> dict[str, list[float]]:
    """ms per call of every runner a factory builds: in processes of their own (``isolated``) or built here and
    called in interleaved rounds (``interleaved``); ``auto`` picks by thread count (choose_method)."""
    if choose_method(method, threads) == "isolated":
        return isolated(factories, runs, warmup, seed=seed, returns=returns)
    return interleaved({k: f() for k, f in factories.items()}, runs, warmup, seed=seed, returns=returns)


def bench_image(spec: dict[str, Any], seed: int) -> np.ndarray:
    """The image every runtime is timed on: seeded uint8 noise at the model's input size (here and on a device)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (spec["height"], spec["width"], spec["channels"]), dtype=np.uint8)


def target_runner(bundle_path: str, target: str, threads: int, exits: bool, image: np.ndarray, color: str,
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


def target_factories(bundle_path: str, targets: list[str], threads: int, exits: bool, image: np.ndarray,
                     color: str) -> dict[str, Callable[[], Callable[[], Any]]]:
    """``<target>`` (the raw runtime call) and ``predict:<target>`` (Predictor.predict) for every target."""
    out = {}
    for t in targets:
        for name, predict in ((t, False), (f"predict:{t}", True)):
            out[name] = functools.partial(target_runner, bundle_path, t, threads, exits, image, color, predict)
    return out


def wrapper_overhead(times: dict[str, list[float]], inner: dict[str, list[float | None]],
                     targets: list[str]) -> dict[str, dict[str, float | None]]:
    """Per target: Predictor.predict's median and p90, the raw call's median, and the wrapper's own cost (the
    runtime time inside each predict call paired out, so noise cancels)."""
    out = {}
    for t in targets:
        total = np.asarray(times[f"predict:{t}"])
        inside = np.asarray(inner[f"predict:{t}"], dtype=float)
        over = float(np.median(total - inside))
        rm = float(np.median(times[t]))
        out[t] = {
            "predict_median_ms": float(np.median(total)),
            "predict_p90_ms": float(np.percentile(total, 90)),
            "run_median_ms": rm,
            "overhead_ms": over,
            "overhead_pct": 100.0 * over / rm if rm > 0 else None,
        }
    return out
