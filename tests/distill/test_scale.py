"""Training and the teacher cache on several processes (Lightning Fabric, CPU gloo) match one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pocketvit.data.datasets import augmented_batches
from pocketvit.distill.cache import TeacherCache, sparse_soft_cross_entropy, write_cache
from pocketvit.distill.supervised import label_batches
from pocketvit.distill.trainer import TrainSettings, train
from pocketvit.errors import PocketVitError, RecipeError
from pocketvit.scale import Dist, ScaleConfig, reset, setup
from pocketvit.scale.engine import rank_batches
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
import dist_worker

SDK = Path(__file__).parents[2] / "sdk"
ENV = os.environ | {"PYTHONPATH": str(SDK), "OMP_NUM_THREADS": "1", "POCKETVIT_QUIET": "1"}


@pytest.mark.slow  # ~15-30 s here: three Python processes import torch and Lightning on 2 shared cores
def test_two_cpu_processes_match_one_process(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    # a real 2-process gloo run, started by Fabric's own launcher (as `pocketvit build --set scale.devices=2`),
    # beside the 1-process reference (its own process, so that it can show it never imported Lightning)
    procs = [subprocess.Popen([sys.executable, str(Path(dist_worker.__file__)), str(out), n], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for out, n in ((two, "2"), (one, "1"))]
    for p in procs:
        log = p.communicate(timeout=300)[0]
        assert p.returncode == 0, log[-3000:]
    assert "lightning_fabric" not in (one / "modules.txt").read_text().split()
    assert "lightning_fabric" in (two / "modules.txt").read_text().split()
    # each rank wrote its own shard; read back they are complete, in order, and equal the 1-process cache
    for epoch in range(2):
        assert sorted(p.name for p in (two / "cache" / f"epoch_{epoch:03d}").iterdir()) == ["rank_000", "rank_001"]
        a, b = TeacherCache(two / "cache", dist_worker.N).table(epoch), TeacherCache(one / "cache", dist_worker.N).table(epoch)
        assert np.array_equal(a["index"], np.arange(dist_worker.N))
        for field in ("seed", "topk_idx", "topk_prob"):
            assert np.array_equal(a[field], b[field]), field
    # same global batch -> same weights (sharded producer and trainer-cut producer alike), to float rounding
    w2, w1 = load_file(str(two / "weights.safetensors")), load_file(str(one / "weights.safetensors"))
    assert w2.keys() == w1.keys()
    for k in w1:  # BatchNorm included: on 2 ranks it normalizes with the global batch's statistics
        assert torch.allclose(w2[k].double(), w1[k].double(), atol=1e-5, rtol=1e-4), k
    assert max(float((w2[k] - w1[k]).abs().max()) for k in w1 if not k.startswith("bn.")) < 1e-5
    # the BatchNorm model computes the same function either way (global-batch statistics on 2 ranks)
    x = dist_worker.splits().normalize(dist_worker.splits().train.images[:32])
    outs = []
    for w in (w1, w2):
        m = dist_worker.bn_model(0)
        m.load_state_dict({k[3:]: v for k, v in w.items() if k.startswith("bn.")})
        outs += [m.eval()(x), m.train()(x)]
    assert torch.allclose(outs[0], outs[2], atol=1e-4) and torch.allclose(outs[1], outs[3], atol=1e-4)
    # the 2-process checkpoint resumes in one process (same format): nothing left to train, the weights are its
    resumed = train(dist_worker.model(9), lambda e: iter(()), sparse_soft_cross_entropy,
                    TrainSettings(epochs=2, lr=3e-3, weight_decay=0.05, steps_per_epoch=3), two / "distill", "resume")
    for k, v in resumed.state_dict().items():
        assert torch.equal(v, w2[f"distill.{k}"]), k


def test_reader_refuses_a_cache_missing_a_rank(tmp_path):
    data, teacher = dist_worker.splits(), dist_worker.model(1).eval()
    write_cache(teacher, data, dist_worker.AUG, 5, 1, 3, 16, tmp_path, rank=0, world_size=2)
    with pytest.raises(PocketVitError, match="missing or stale"):
        TeacherCache(tmp_path, dist_worker.N).table(0)
    write_cache(teacher, data, dist_worker.AUG, 5, 1, 3, 16, tmp_path, rank=1, world_size=2)
    assert len(TeacherCache(tmp_path, dist_worker.N).table(0)["index"]) == dist_worker.N
    # rerun on one rank: rank 0 redoes the epoch for the new world and removes rank 1's stale shard
    write_cache(teacher, data, dist_worker.AUG, 5, 1, 3, 16, tmp_path)
    assert [p.name for p in (tmp_path / "epoch_000").iterdir()] == ["rank_000"]
    assert set(TeacherCache(tmp_path, dist_worker.N).shard_bytes()) == {"rank_000"}


def test_sharded_producer_and_cut_batches_give_the_same_rows(tmp_path):
    data = dist_worker.splits()
    write_cache(dist_worker.model(1).eval(), data, dist_worker.AUG, 5, 1, 3, 16, tmp_path)
    reader = TeacherCache(tmp_path, dist_worker.N)
    for rank in range(3):
        dist = Dist(torch.device("cpu"), rank, 3)
        made = list(rank_batches(lambda e, shard=None: reader.batches(data, dist_worker.AUG, e, 32, 0, shard=shard),
                                 0, dist))
        cut = list(rank_batches(lambda e: reader.batches(data, dist_worker.AUG, e, 32, 0), 0, dist))
        assert len(made) == len(cut) == 3
        for (x1, t1), (x2, t2) in zip(made, cut):
            assert torch.equal(x1, x2) and torch.equal(t1.topk_idx, t2.topk_idx)
        # the labelled producer (teacher, baseline): its global batches are the data module's, rows cut alike
        made = list(rank_batches(label_batches(data, dist_worker.AUG, 4, 32), 1, dist))
        for (x, y), (idx, _, images) in zip(made, augmented_batches(data.train, dist_worker.AUG, 4, 1, 32), strict=True):
            assert torch.equal(x, data.normalize(images[rank::3])) and torch.equal(y, data.train.labels[idx[rank::3]])


def test_fabric_path_in_one_process_trains_and_resumes(tmp_path):
    """bf16-mixed sends even one process through Fabric (precision plugin, Fabric checkpoint): same loop, close
    to the fp32 run, and its checkpoint resumes in the plain loop."""
    data, settings = dist_worker.splits(), TrainSettings(epochs=1, lr=3e-3, weight_decay=0.05, steps_per_epoch=3)
    write_cache(dist_worker.model(1).eval(), data, dist_worker.AUG, 5, 1, 3, 16, tmp_path / "cache")
    reader = TeacherCache(tmp_path / "cache", dist_worker.N)
    def batches(e):
        return reader.batches(data, dist_worker.AUG, e, 32, 0)

    fp32 = train(dist_worker.model(2), batches, sparse_soft_cross_entropy, settings, tmp_path / "fp32", "fp32")
    dist = setup(ScaleConfig(accelerator="cpu", precision="bf16-mixed"))
    try:
        assert dist.fabric is not None and dist.world_size == 1
        bf16 = train(dist_worker.model(2), batches, sparse_soft_cross_entropy, settings, tmp_path / "bf16", "bf16")
    finally:
        reset()
    for (k, a), b in zip(fp32.state_dict().items(), bf16.state_dict().values()):
        assert torch.allclose(a, b, atol=2e-2), k
    assert any(not torch.equal(a, b) for a, b in zip(fp32.state_dict().values(), bf16.state_dict().values()))
    resumed = train(dist_worker.model(9), batches, sparse_soft_cross_entropy, settings, tmp_path / "bf16", "resume")
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), bf16.state_dict().values()))
    # and the plain loop's checkpoint resumes under Fabric (fabric.load)
    setup(ScaleConfig(accelerator="cpu", precision="bf16-mixed"))
    try:
        resumed = train(dist_worker.model(9), batches, sparse_soft_cross_entropy, settings, tmp_path / "fp32", "resume")
    finally:
        reset()
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), fp32.state_dict().values()))


def test_scale_settings_are_checked():
    with pytest.raises(RecipeError, match="scale.strategy: fsdp needs GPUs"):
        setup(ScaleConfig(accelerator="cpu", strategy="fsdp"))
    with pytest.raises(RecipeError, match="scale.precision"):
        setup(ScaleConfig(precision="fp8"))


@pytest.mark.slow  # ~25-60 s: a real `pocketvit build` on two CPU processes under torchrun, then on one
def test_build_on_two_processes_then_one_reuses_every_stage(tmp_path, fmnist_root):
    from tests.conftest import ROOT, TINY, run_cli

    args = ("build", str(TINY), "--out", str(tmp_path), "--until", "baseline")
    loud = ENV | {"POCKETVIT_QUIET": "0"}
    # torchrun's topology (2 processes) wins over the recipe's scale.devices (1)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "pocketvit.cli.main", *args, "--set", "scale.accelerator=cpu"],
                         check=False, capture_output=True, text=True, env=loud, cwd=ROOT, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    (cache,) = (tmp_path / "stages").glob("teacher_cache-*")
    assert sorted(p.name for p in (cache / "cache" / "epoch_000").iterdir()) == ["rank_000", "rank_001"]
    assert two.stderr.count("▶ distill") == 1  # progress and logs from rank 0 only
    one = run_cli(*args, env=loud)  # the scale settings are not part of any stage's hash: one process reuses it all
    assert one.returncode == 0, one.stderr[-3000:]
    assert "▶" not in one.stderr and one.stderr.count("(cached") == 5
