"""The similarity-matrix losses against hand computations (numpy loops, no shared code)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from pocketvit.clip.losses import affinity_mimicking, clip_loss, cosine_loss, similarity_kd


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def _softmax_row(row: list[float]) -> list[float]:
    m = max(row)
    e = [math.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


def _hand_affinity(sa, sb, ta, tb, scale):
    sa, sb, ta, tb = (x.double().numpy() for x in (sa, sb, ta, tb))
    n = len(sa)
    s = [[scale * float(sa[i] @ sb[j]) for j in range(n)] for i in range(n)]
    t = [[scale * float(ta[i] @ tb[j]) for j in range(n)] for i in range(n)]

    def ce(logits, target):  # mean over rows of -sum p_t log p_s
        total = 0.0
        for lr, tr in zip(logits, target):
            ps, pt = _softmax_row(lr), _softmax_row(tr)
            total -= sum(b * math.log(a) for a, b in zip(ps, pt))
        return total / len(logits)

    def transpose(m):
        return [list(r) for r in zip(*m)]

    return 0.5 * ce(s, t) + 0.5 * ce(transpose(s), transpose(t))


def test_affinity_mimicking_matches_a_hand_computation():
    sa, sb, ta, tb = _unit(5, 8, 0), _unit(5, 8, 1), _unit(5, 8, 2), _unit(5, 8, 3)
    got = float(affinity_mimicking(sa, sb, ta, tb, scale=50.0))
    assert abs(got - _hand_affinity(sa, sb, ta, tb, 50.0)) < 1e-4


def test_affinity_mimicking_is_smallest_when_the_student_is_the_teacher():
    ta, tb = _unit(6, 8, 2), _unit(6, 8, 3)
    same = float(affinity_mimicking(ta, tb, ta, tb, 50.0))
    other = float(affinity_mimicking(_unit(6, 8, 4), tb, ta, tb, 50.0))
    assert same < other


def test_clip_loss_is_the_symmetric_cross_entropy_and_positives_generalise_it():
    img, txt = _unit(4, 6, 0), _unit(4, 6, 1)
    logits = 100.0 * img @ txt.t()
    labels = torch.arange(4)
    expected = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
    assert torch.allclose(clip_loss(img, txt, 100.0), expected)
    assert torch.allclose(clip_loss(img, txt, 100.0, positives=torch.eye(4, dtype=torch.bool)), expected)
    # two images of one class: each row's target spreads over both of the class's captions
    cls = torch.tensor([0, 0, 1, 2])
    pos = cls[:, None] == cls[None, :]
    lp = F.log_softmax(logits, -1).numpy()
    row0 = -(lp[0, 0] + lp[0, 1]) / 2
    got = clip_loss(img, txt, 100.0, positives=pos)
    lpt = F.log_softmax(logits.t(), -1).numpy()
    hand = 0.5 * (np.mean([row0, -(lp[1, 0] + lp[1, 1]) / 2, -lp[2, 2], -lp[3, 3]])
                  + np.mean([-(lpt[0, 0] + lpt[0, 1]) / 2, -(lpt[1, 0] + lpt[1, 1]) / 2, -lpt[2, 2], -lpt[3, 3]]))
    assert abs(float(got) - hand) < 1e-4


def test_similarity_kd_is_zero_for_a_perfect_student_and_averages_the_ensemble():
    img, txt = _unit(5, 8, 0), _unit(5, 8, 1)
    assert float(similarity_kd(img, txt, img, txt, 100.0)) < 1e-6
    t1, t2 = _unit(5, 8, 2), _unit(5, 8, 3)
    ens = float(similarity_kd(img, txt, torch.stack([t1, t2], 1), txt, 10.0))
    # hand: KL(mean of the teachers' row softmaxes || student's), both directions
    s = (10.0 * img @ txt.t()).double()
    t = [(10.0 * x @ txt.t()).double() for x in (t1, t2)]
    i2t = (t[0].softmax(-1) + t[1].softmax(-1)) / 2
    t2i = (t[0].t().softmax(-1) + t[1].t().softmax(-1)) / 2
    def kl(p, logits):
        return float((p * (p.log() - logits.log_softmax(-1))).sum(-1).mean())

    assert abs(ens - 0.5 * (kl(i2t, s) + kl(t2i, s.t()))) < 1e-5


def test_cosine_loss():
    a = _unit(3, 4, 0)
    assert float(cosine_loss(a, a)) < 1e-6 and abs(float(cosine_loss(a, -a)) - 2.0) < 1e-6
