"""One timing method everywhere: the build's verify stages and `pocketvit export`'s model card time an exported file
the way `pocketvit bench` does (bench/latency.py's time_runners: ``auto`` is a process of its own per runner with more
than one thread, one process with one), and every figure says how it was timed (method, threads, runs, warm-up).
Cheap: the build times ``verify.latency_runs`` calls, the export card 20."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from pocketvit.bench._common import input_color, open_bundle
from pocketvit.bench.latency import _target_runner, choose_method, time_runners


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
    factories = {t: functools.partial(_target_runner, root, t, threads, False, image, input_color(spec), False)
                 for t in targets}
    times = time_runners(factories, runs, warmup, threads, method, seed=seed)
    return {t: timing(ms, choose_method(method, threads), threads, warmup) for t, ms in times.items()}
