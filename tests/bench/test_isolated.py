"""bench/isolated.py: every runner in its own process, blocks of calls in turn."""

from __future__ import annotations

import functools
import os

import pytest
from pocketvit.bench.isolated import BenchProcessError, isolated


def _pid_runner(delay_s: float):
    import time

    def run():
        time.sleep(delay_s)
        return os.getpid()

    return run


def _broken_runner():
    raise RuntimeError("model file unreadable")


def test_each_runner_runs_in_its_own_process_and_returns_come_back():
    factories = {"a": functools.partial(_pid_runner, 0.0), "b": functools.partial(_pid_runner, 0.004)}
    returns: dict = {}
    times = isolated(factories, runs=12, warmup=1, block=4, settle_s=0.0, returns=returns)
    assert {k: len(v) for k, v in times.items()} == {"a": 12, "b": 12}
    pids = {k: set(v) for k, v in returns.items()}
    assert all(len(p) == 1 for p in pids.values())  # one process per runner, for every block
    assert pids["a"] != pids["b"] and float(os.getpid()) not in pids["a"] | pids["b"]
    assert min(times["b"]) >= 4.0 > min(times["a"])  # each runner's own time, in ms


def test_a_runner_that_cannot_start_is_named():
    with pytest.raises(BenchProcessError, match="'bad' failed: RuntimeError: model file unreadable"):
        isolated({"ok": functools.partial(_pid_runner, 0.0), "bad": _broken_runner}, runs=4, warmup=0)
