"""`python -m benchmarks.train_step`: plain vs fast student steps on the recipe's own student and data."""

from __future__ import annotations

import json

import torch

from benchmarks import train_step
from tests.conftest import TINY


def test_train_step_bench_checks_numerics_and_times_both_forms(fmnist_root, capsys):
    before = torch.get_num_threads()
    try:
        train_step.main([str(TINY), "--steps", "2", "--threads", "1"])
    finally:
        torch.set_num_threads(before)
    out = json.loads(capsys.readouterr().out)
    assert out["logits_max_abs_diff"] == 0.0 and out["grad_max_rel_diff"] < 1e-5, out
    assert out["plain_step_cpu_ms"] > 0 and out["fast_step_cpu_ms"] > 0 and out["speedup_cpu"] > 0
    assert out["steps"] == 2 and out["threads"] == 1 and out["student"]["arch"] == "pocketvit-tinyvit"
