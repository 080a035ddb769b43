import numpy as np
import torch
from pocketvit.data.augment import AugmentConfig
from pocketvit.data.datasets import ImageSet, Splits
from pocketvit.distill.cache import SparseLogits, TeacherCache, sparse_soft_cross_entropy, write_cache


def _splits(n=96):
    g = torch.Generator().manual_seed(1)
    imgs = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    s = ImageSet(imgs, torch.randint(0, 10, (n,), generator=g))
    return Splits("synthetic", s, s.subset(np.arange(8)), s.subset(np.arange(8)), [str(i) for i in range(10)],
                  [0.5], [0.5], "GRAY")


class _Teacher(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))

    def forward(self, x):
        return self.net(x) * 5


def test_sparse_kd_matches_dense_computation():
    torch.manual_seed(0)
    logits = torch.randn(6, 10)
    teacher_p = torch.softmax(torch.randn(6, 10) * 3, 1)
    p, i = teacher_p.topk(4, 1)
    loss = sparse_soft_cross_entropy(logits, SparseLogits(i, p))
    # dense reference: keep the top-4, spread the rest evenly over the 6 other classes, loop by hand
    ref = 0.0
    logp = torch.log_softmax(logits, 1)
    for b in range(6):
        rest = (1 - p[b].sum()) / 6
        target = torch.full((10,), float(rest))
        target[i[b]] = p[b]
        ref += -(target * logp[b]).sum()
    assert torch.allclose(loss, ref / 6, atol=1e-6)
    # with k = all classes it is exactly the full soft cross-entropy
    p_all, i_all = teacher_p.topk(10, 1)
    full = sparse_soft_cross_entropy(logits, SparseLogits(i_all, p_all))
    assert torch.allclose(full, -(teacher_p * logp).sum(1).mean(), atol=1e-6)


def test_cache_replay_is_bit_identical(tmp_path):
    splits, aug, teacher = _splits(), AugmentConfig(shift=2, hflip=True, erase_prob=0.3), _Teacher()
    write_cache(teacher, splits, aug, seed=5, epochs=2, topk=3, batch_size=32, root=tmp_path)
    cache = TeacherCache(tmp_path, len(splits.train))
    for epoch in range(2):
        for x, target in cache.batches(splits, aug, epoch, 32, shuffle_seed=0):
            # rebuilt images give the teacher exactly the stored top-k (indices; probabilities to fp16)
            with torch.no_grad():
                p, i = torch.softmax(teacher(x), 1).topk(3, 1)
            assert torch.equal(i, target.topk_idx)
            assert torch.allclose(p, target.topk_prob, atol=1e-3)


def test_cache_sharded_by_rank_reads_back_complete(tmp_path):
    splits, aug, teacher = _splits(), AugmentConfig(), _Teacher()
    for rank in range(2):
        write_cache(teacher, splits, aug, 5, 1, 3, 32, tmp_path, rank=rank, world_size=2)
    single = tmp_path / "single"
    write_cache(teacher, splits, aug, 5, 1, 3, 32, single)
    two, one = TeacherCache(tmp_path, 96).table(0), TeacherCache(single, 96).table(0)
    for field in ("index", "seed", "topk_idx", "topk_prob"):
        assert np.array_equal(two[field], one[field])


def test_incomplete_epoch_is_redone(tmp_path):
    splits, aug, teacher = _splits(), AugmentConfig(), _Teacher()
    write_cache(teacher, splits, aug, 5, 2, 3, 32, tmp_path)
    (tmp_path / "epoch_001" / "rank_000" / "done").unlink()
    (tmp_path / "epoch_001" / "rank_000" / "seed.npy").write_bytes(b"garbage")
    write_cache(teacher, splits, aug, 5, 2, 3, 32, tmp_path)
    assert len(TeacherCache(tmp_path, 96).table(1)["seed"]) == 96


def test_topk_larger_than_the_teachers_classes_is_a_clear_error(tmp_path):
    import pytest
    from pocketvit.errors import PocketVitError

    with pytest.raises(PocketVitError, match="teacher_cache.topk is 11 but the teacher has only 10 classes"):
        write_cache(_Teacher(), _splits(), AugmentConfig(), 5, 1, 11, 32, tmp_path)
