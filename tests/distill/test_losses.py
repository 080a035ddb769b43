"""The tempered sparse KD loss (distill/losses.py)."""

import torch
from pocketvit.distill.cache import SparseLogits


def test_tempered_kd_loss_matches_dense_hinton_kd():
    """With every class stored, the re-tempered sparse target is exactly softmax(teacher_logits / T)."""
    from pocketvit.distill.losses import sparse_kd_loss, tempered_target

    torch.manual_seed(0)
    teacher, student = torch.randn(6, 10) * 3, torch.randn(6, 10)
    p, i = torch.softmax(teacher, 1).topk(10, dim=1)
    target = SparseLogits(i, p)
    for t in (1.0, 2.0, 4.0):
        expected = torch.softmax(teacher / t, 1)
        assert torch.allclose(tempered_target(target, 10, t), expected, atol=1e-6)
        dense = -(expected * torch.log_softmax(student / t, 1)).sum(1).mean() * t * t
        assert torch.allclose(sparse_kd_loss(t)(student, target), dense, atol=1e-5)
    # top-k only: the classes outside the top-k share the leftover mass evenly, also after tempering
    p3, i3 = torch.softmax(teacher, 1).topk(3, dim=1)
    q = tempered_target(SparseLogits(i3, p3), 10, 2.0)
    assert torch.allclose(q.sum(1), torch.ones(6), atol=1e-6)
    rest = torch.ones(6, 10, dtype=torch.bool).scatter_(1, i3, False)
    vals = q[rest].view(6, 7)
    assert torch.allclose(vals, vals[:, :1].expand(-1, 7))


def test_training_targets_move_to_the_device_sparse_logits_included():
    """train_step (and QAT) move the target with the batch: labels, tuples of them and SparseLogits alike."""
    from pocketvit.distill.trainer import to_device

    meta = torch.device("meta")
    target = SparseLogits(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3))
    moved = to_device(target, meta)
    assert isinstance(moved, SparseLogits) and moved.topk_idx.is_meta and moved.topk_prob.is_meta
    labels, pair = to_device(torch.zeros(2), meta), to_device((torch.zeros(2), torch.zeros(1)), meta)
    assert labels.is_meta and isinstance(pair, tuple) and all(t.is_meta for t in pair)
    assert to_device("not a tensor", meta) == "not a tensor"
