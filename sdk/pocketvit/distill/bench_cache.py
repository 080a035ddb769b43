"""What the teacher cache buys: student training steps fed from the cache vs with the teacher online.

Both arms train the same student with the same loss, optimizer and batch size; they differ only in where
the soft targets come from. Cache arm: replay the augmentation from the stored seeds and read the stored
top-k. Online arm: augment, run the teacher forward (at the cache's precision) and take its top-k, as a
run without a cache would. Arms alternate in short blocks so that a shared, noisy CPU slows both alike;
the figure is the ratio of the median seconds per step. Each step is also split in two, timed inside the same
steps: making the batch (cache: read the top-k + replay the augmentation; online: augment + teacher forward +
top-k) and the student's training step, so the report says where a step's time goes.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Iterator

import torch
from torch import nn

from pocketvit.data.augment import AugmentConfig
from pocketvit.data.datasets import Splits, augmented_batches
from pocketvit.distill.cache import SparseLogits, TeacherCache, sparse_soft_cross_entropy
from pocketvit.distill.trainer import inference_autocast, make_optimizer, train_step
from pocketvit.models.train_forms import training_form
from pocketvit.progress import progress_bar
from pocketvit.scale.engine import LocalEngine


def online_batches(teacher: nn.Module, splits: Splits, aug: AugmentConfig, seed: int, batch_size: int, topk: int,
                   precision: str) -> Iterator[tuple[torch.Tensor, SparseLogits]]:
    """Endless (normalized augmented images, teacher top-k) batches computed now, teacher in the loop."""
    device = next(teacher.parameters()).device
    for epoch in itertools.count():
        for _, _, images in augmented_batches(splits.train, aug, seed, epoch, batch_size):
            x = splits.normalize(images)
            with torch.no_grad(), inference_autocast(precision, device):
                t = x.to(device)
                logits = teacher(t.contiguous(memory_format=torch.channels_last) if device.type == "cpu" else t)
            p, i = torch.softmax(logits.float(), 1).topk(topk, dim=1)
            yield x, SparseLogits(i.cpu(), p.cpu())


def cached_batches(reader: TeacherCache, splits: Splits, aug: AugmentConfig, seed: int,
                   batch_size: int) -> Iterator[tuple[torch.Tensor, SparseLogits]]:
    for epoch in itertools.count():
        yield from reader.batches(splits, aug, epoch, batch_size, seed)


class MixedPrecisionStudent(nn.Module):
    """The student's forward as Lightning Fabric runs it at `16-mixed` / `bf16-mixed` (its MixedPrecision plugin:
    inputs cast, forward under autocast, outputs back to float32), so that the benchmark's student step costs what
    the distill stage's does. The benchmark runs in one process (rank 0), so it cannot use the run's DDP module;
    16-mixed runs without Fabric's loss scaler (a few elementwise ops a step)."""

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=self.dtype):
            return self.model(x.to(self.dtype)).float()


MIXED = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def measure_cache_speedup(
    teacher: nn.Module, student: nn.Module, reader: TeacherCache, splits: Splits, aug: AugmentConfig, seed: int,
    batch_size: int, topk: int, steps: int = 20, precision: str = "fp32", block: int = 1, lr: float = 1e-3,
    train_precision: str = "32-true", fast: bool = True,
) -> dict[str, float | int]:
    """Seconds per training step from the cache and with the teacher online (`steps` timed steps each, in
    alternating blocks of `block`, after one untimed warm-up step each); `cache_speedup` = online / cache.

    `precision` is the teacher's (as the cache recorded it), `train_precision` the student's training precision
    (the run's `scale.precision`, resolved: 32-true, bf16-mixed or 16-mixed); `fast` trains as the distill stage
    does with `distill.fast_train` (training-time model form + fused AdamW)."""
    device = next(teacher.parameters()).device
    engine = LocalEngine(device)
    teacher.eval().to(device)
    if device.type == "cpu":
        teacher.to(memory_format=torch.channels_last)
    layout = torch.channels_last
    student.to(memory_format=layout).train()
    net, opt = engine.setup(student, lambda m: make_optimizer(m, lr, 0.05, fast))
    if train_precision in MIXED:
        net = MixedPrecisionStudent(net, MIXED[train_precision])
    arms = {"cache": cached_batches(reader, splits, aug, seed, batch_size),
            "online": online_batches(teacher, splits, aug, seed, batch_size, topk, precision)}
    per_step: dict[str, list[float]] = {a: [] for a in arms}
    parts: dict[str, list[float]] = {"cache_batch": [], "online_batch": [], "student_step": []}

    def run(arm: str, n: int, record: bool = True) -> float:
        batch_s = step_s = 0.0
        for _ in range(n):
            start = time.perf_counter()
            x, target = next(arms[arm])
            made = time.perf_counter()
            train_step(engine, net, opt, x, target, sparse_soft_cross_entropy, 5.0, layout)
            if device.type == "cuda":
                torch.cuda.synchronize()
            batch_s, step_s = batch_s + made - start, step_s + time.perf_counter() - made
        if record:
            parts[f"{arm}_batch"].append(batch_s / n)
            parts["student_step"].append(step_s / n)
        return batch_s + step_s

    blocks = max(1, -(-steps // block))
    with training_form(student, fast), \
            progress_bar("cache speed-up (cache vs teacher online)", 2 * (1 + blocks * block)) as advance:
        for arm in arms:  # warm-up: first-call allocations and kernel selection, untimed
            run(arm, 1, record=False)
            advance(1)
        for b in range(blocks):
            for arm in (("cache", "online") if b % 2 == 0 else ("online", "cache")):
                per_step[arm].append(run(arm, block) / block)
                advance(block)
    student.to(memory_format=torch.contiguous_format).eval()
    cache_s, online_s = statistics.median(per_step["cache"]), statistics.median(per_step["online"])
    return {"cache_speedup": round(online_s / cache_s, 3), "cache_step_seconds": round(cache_s, 5),
            "online_step_seconds": round(online_s, 5), "bench_steps": blocks * block, "bench_batch_size": batch_size,
            "bench_train_precision": train_precision, "bench_fast_train": fast,
            **{f"{k}_seconds": round(statistics.median(v), 5) for k, v in parts.items()}}
