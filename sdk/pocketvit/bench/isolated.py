"""Each runner in its own process, timed in short blocks taken in turn: fair multi-thread timing.

Why: with several threads on few cores, runtimes that share one process disturb each other. ONNX
Runtime's worker threads keep spinning after a call returns and take the cores from whatever runs
next (measured on 2 cores: ExecuTorch 21.5 ms beside a spinning ONNX Runtime session, 10.7 ms
without one), so an in-process interleaved run is biased against whoever follows it. Here every
runner lives in a spawned process of its own (as in an app: one runtime, its default threading),
and the parent asks one process at a time for a block of calls, in a fresh seeded random order each
round, with a pause between blocks so the last one's spinning threads go to sleep, and untimed calls
before each block (REWARM_S) so that the block is timed in the steady state of back-to-back calls. Drift and
background load still hit every runner alike (blocks alternate); nothing else of ours runs while a
block is timed. A runner is described by a picklable factory (a module-level function, or a
functools.partial of one) that builds the callable inside the child.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from pocketvit.errors import PocketVitError

Factory = Callable[[], Callable[[], Any]]
SETTLE_S = 0.05  # ONNX Runtime's pool stops spinning well within this after its last call (measured: spin.py)
BLOCK = 5
# untimed calls before each block, for at least this long: after the pause (and the other runners' blocks) idle
# cores and sleeping worker threads take several calls to come back; one re-warm call was not enough for a 3.6 ms
# model (MobileNetV3-large, 2 threads: ExecuTorch 1.28x ONNX Runtime in blocks of 5 after one call, 0.91x in
# blocks of 25 and 0.97x alone in a fresh process)
REWARM_S = 0.05
START_TIMEOUT_S = 600.0


class BenchProcessError(PocketVitError):
    """A benchmark worker process failed to start or to run its model."""


def timed(fn: Callable[[], Any], n: int) -> tuple[list[float], list[float | None]]:
    """ms per call and what each call returned when that is a number (e.g. the runtime time inside predict)."""
    clock = time.perf_counter_ns
    ms: list[float] = []
    ret: list[float | None] = []
    for _ in range(n):
        t0 = clock()
        r = fn()
        ms.append((clock() - t0) / 1e6)
        ret.append(float(r) if isinstance(r, (int, float)) else None)
    return ms, ret


def _worker(conn, factory: Factory) -> None:
    try:
        fn = factory()
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", None))
    gc.collect()
    gc.disable()
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            break
        _, n, warm, warm_s = msg
        try:
            until = time.perf_counter() + warm_s
            for _ in range(warm):
                fn()
            while time.perf_counter() < until:
                fn()
            conn.send(("times", timed(fn, n)))
        except BaseException:  # noqa: BLE001
            conn.send(("error", traceback.format_exc()))
            return
    conn.close()


def _receive(name: str, conn, proc, timeout: float) -> Any:
    if not conn.poll(timeout):
        raise BenchProcessError(f"benchmark process for {name!r} did not answer within {timeout:.0f} s")
    try:
        kind, payload = conn.recv()
    except EOFError:
        raise BenchProcessError(
            f"benchmark process for {name!r} died (exit code {proc.exitcode}); rerun with --method interleaved "
            "to time it in this process and see the error") from None
    if kind == "error":
        last = payload.strip().splitlines()[-1] if payload.strip() else "unknown error"
        raise BenchProcessError(f"benchmark process for {name!r} failed: {last}\n{payload}")
    return payload


def isolated(
    factories: dict[str, Factory], runs: int, warmup: int, seed: int = 0, block: int = BLOCK,
    settle_s: float = SETTLE_S, returns: dict[str, list[float | None]] | None = None, rewarm_s: float = REWARM_S,
) -> dict[str, list[float]]:
    """Time every runner ``runs`` times (ms per call), each in its own spawned process, ``block`` calls
    at a time (after untimed calls for at least ``rewarm_s``, one at least, that bring back caches another
    process evicted, idle cores and sleeping worker threads), runners in a
    fresh seeded random order each round. ``returns``, if given, receives what each call returned
    when that is a number (same order as the times)."""
    ctx = mp.get_context("spawn")
    names = list(factories)
    procs: dict[str, tuple[Any, Any]] = {}
    try:
        for name in names:
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(child, factories[name]), daemon=True, name=f"bench-{name}")
            p.start()
            child.close()
            procs[name] = (parent, p)
        for name in names:  # loading happens in parallel; wait for all before any timing
            _receive(name, *procs[name], START_TIMEOUT_S)
        times: dict[str, list[float]] = {n: [] for n in names}
        rets: dict[str, list[float | None]] = {n: [] for n in names}

        def ask(name: str, n: int, warm: int, warm_s: float = 0.0) -> None:
            conn, p = procs[name]
            conn.send(("run", n, warm, warm_s))
            ms, ret = _receive(name, conn, p, START_TIMEOUT_S)
            times[name].extend(ms)
            rets[name].extend(ret)
            time.sleep(settle_s)

        for name in names:
            ask(name, 0, max(0, warmup))
        rng = np.random.default_rng(seed)
        done = 0
        while done < runs:
            n = min(block, runs - done)
            for i in rng.permutation(len(names)):
                ask(names[i], n, 1, rewarm_s)
            done += n
    finally:
        for name, (conn, p) in procs.items():
            try:
                conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
    if returns is not None:
        returns.update(rets)
    return times
