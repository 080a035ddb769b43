"""The `cache_bench` build stage: report.json's distill.cache_speedup, measured on the recipe's own teacher,
student, cache and batch size (see distill/bench_cache.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pocketvit.pipeline.context import BuildContext
from pocketvit.pipeline.runner import StageResult
from pocketvit.progress import log


def cache_bench_stage(ctx: BuildContext, teacher: StageResult, cache: StageResult,
                      teacher_model: Callable[[], nn.Module]) -> StageResult | None:
    """Run (or reuse) the benchmark; None when the recipe sets distill.cache_bench_steps: 0.

    `teacher_model()` loads the teacher the way the cache stage did (student-normalized images in, logits out)."""
    recipe, runner, splits, aug, data = ctx.recipe, ctx.runner, ctx.splits, ctx.aug, ctx.data
    steps = recipe.distill.cache_bench_steps
    if steps == 0:
        return None
    from pocketvit.scale import current

    train_precision = current().extra.get("precision", "32-true")  # the distill stage's (scale.precision, resolved)

    def run(path: Path) -> dict[str, Any]:
        from pocketvit.distill.bench_cache import measure_cache_speedup
        from pocketvit.distill.cache import TeacherCache
        from pocketvit.models.weights import build_from_meta

        if not current().is_zero:  # one process measures; in a multi-process run the others wait for it
            return {}
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        threads, before = recipe.distill.cache_bench_threads or torch.get_num_threads(), torch.get_num_threads()
        # its own random stream: whether this stage ran or was cached must not change the stages after it
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed)
            model = teacher_model()
            student = build_from_meta(recipe.student.model_dump(), splits).to(device)
            reader = TeacherCache(cache.path / "cache", len(splits.train))
            torch.set_num_threads(threads)
            try:
                out = measure_cache_speedup(model.to(device), student, reader, splits, aug, recipe.seed,
                                            recipe.distill.batch_size, cache.meta["topk"], steps,
                                            cache.meta["precision"], lr=recipe.distill.lr, train_precision=train_precision,
                                            fast=recipe.distill.fast_train)
            finally:
                torch.set_num_threads(before)
        return out | {"bench_threads": threads, "bench_device": device.type}

    cfg = {"steps": steps, "threads": recipe.distill.cache_bench_threads, "student": recipe.student.model_dump(), "batch_size": recipe.distill.batch_size,
           "parts": True, "train_precision": train_precision,  # parts: results since the per-step split was added
           "fast_train": recipe.distill.fast_train}  # a speed benchmark: rerun when the training step changes
    result = runner.run("cache_bench", cfg, [data, teacher, cache], run)
    m = result.meta
    log(f"  cache speed-up {m['cache_speedup']:.2f}x: {m['cache_step_seconds'] * 1e3:.0f} ms/step from the cache, "
        f"{m['online_step_seconds'] * 1e3:.0f} ms/step with the teacher online")
    if m.get("student_step_seconds"):
        log(f"  per step: student training {m['student_step_seconds'] * 1e3:.0f} ms, batch from the cache "
            f"{m['cache_batch_seconds'] * 1e3:.1f} ms, batch online (teacher forward) {m['online_batch_seconds'] * 1e3:.0f} ms")
    return result
