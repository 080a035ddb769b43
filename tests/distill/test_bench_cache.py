"""The cache speed-up benchmark: both arms train the same student; a heavy teacher makes the online arm slower."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from pocketvit.data.datasets import augmented_batches
from pocketvit.distill.bench_cache import measure_cache_speedup, online_batches
from pocketvit.distill.cache import TeacherCache, write_cache
from pocketvit.models import build_model

sys.path.insert(0, str(Path(__file__).parent))
import dist_worker


def _teacher(widths):
    torch.manual_seed(0)
    return build_model("pocketvit-resnet", 1, 10, 12, {"widths": widths, "depths": [1, 1, 1]}).eval()


def test_online_arm_gives_the_cached_targets(tmp_path):
    """Both arms feed the student the same targets: the online teacher's top-k equals the cache's rows."""
    data, teacher = dist_worker.splits(), _teacher([8, 8, 8])
    write_cache(teacher, data, dist_worker.AUG, 0, 1, 3, 32, tmp_path)
    table = TeacherCache(tmp_path, dist_worker.N).table(0)
    idx, _, _ = next(augmented_batches(data.train, dist_worker.AUG, 0, 0, 16))
    x, target = next(online_batches(teacher, data, dist_worker.AUG, 0, 16, 3, "fp32"))
    assert x.shape == (16, 1, 12, 12)
    assert torch.equal(target.topk_idx, torch.from_numpy(table["topk_idx"][idx].astype("int64")))
    assert torch.allclose(target.topk_prob, torch.from_numpy(table["topk_prob"][idx].astype("float32")), atol=1e-3)


@pytest.fixture
def one_thread():
    """As the build's benchmark does: OpenMP on a busy 2-core machine can stall a step for seconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_heavy_teacher_online_is_slower_than_the_cache(tmp_path, one_thread):
    data, teacher = dist_worker.splits(), _teacher([96, 192, 192])
    write_cache(teacher, data, dist_worker.AUG, 0, 1, 3, 32, tmp_path)
    student = build_model("pocketvit-tinyvit", 1, 10, 12, {"stem_dim": 8, "dims": [16], "depths": [1], "heads": [1]})
    before = [p.detach().clone() for p in student.parameters()]
    out = measure_cache_speedup(teacher, student, TeacherCache(tmp_path, dist_worker.N), data, dist_worker.AUG, 0,
                                batch_size=32, topk=3, steps=6)
    assert out["bench_steps"] == 6 and out["cache_step_seconds"] > 0
    assert out["cache_speedup"] > 1.5, out  # a ~100x heavier teacher forward in every online step
    assert out["cache_speedup"] == pytest.approx(out["online_step_seconds"] / out["cache_step_seconds"], rel=1e-2)
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))  # it really trained
    # the split of a step: the heavy teacher's forward is in the online batch, not in the student's step
    assert all(out[f"{k}_seconds"] > 0 for k in ("cache_batch", "online_batch", "student_step")), out
    assert out["online_batch_seconds"] > out["cache_batch_seconds"], out


def test_build_reports_the_speedup(tiny_build):
    report = json.loads((tiny_build / "report.json").read_text())
    d = report["distill"]
    assert d["cache_speedup"] > 0 and d["bench_steps"] == 20 and "cache_bench" in report["stages"]
    assert d["student_step_seconds"] > 0 and d["online_batch_seconds"] > 0
    md = (tiny_build / "report.md").read_text()
    assert "Cache speed-up" in md and "the student's training step" in md


def test_student_steps_run_at_the_training_precision(tmp_path, one_thread):
    """Under scale.precision bf16-mixed the distill stage's student runs its forward in bf16 (Fabric's autocast);
    the benchmark's student steps must cost what those do, so they run the same way."""
    data, teacher = dist_worker.splits(), _teacher([8, 8, 8])
    write_cache(teacher, data, dist_worker.AUG, 0, 1, 3, 32, tmp_path)
    student = build_model("pocketvit-tinyvit", 1, 10, 12, {"stem_dim": 8, "dims": [16], "depths": [1], "heads": [1]})
    seen = []
    student.head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    out = measure_cache_speedup(teacher, student, TeacherCache(tmp_path, dist_worker.N), data, dist_worker.AUG, 0,
                                batch_size=16, topk=3, steps=2, train_precision="bf16-mixed")
    assert out["bench_train_precision"] == "bf16-mixed" and out["bench_steps"] == 2
    assert len(seen) == 6 and set(seen) == {torch.bfloat16}  # 2 warm-up + 2 x 2 timed steps, all under autocast
    assert all(p.dtype == torch.float32 for p in student.parameters())  # mixed precision: the weights stay fp32
