"""Losses over similarity matrices: CLIP contrastive, TinyCLIP affinity mimicking, MobileCLIP similarity KD.

All take L2-normalised embeddings; `scale` is the logit scale (CLIP/MobileCLIP 100, TinyCLIP 50).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum_j target_ij log softmax(logits)_ij."""
    return -(target * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def clip_loss(img: torch.Tensor, txt: torch.Tensor, scale: float = 100.0,
              positives: torch.Tensor | None = None) -> torch.Tensor:
    """½ CE(image -> text) + ½ CE(text -> image). Without `positives` the pairs are the diagonal; with a
    (B, B) bool matrix every marked pair is a positive (captions of one class are all true captions of
    each of its images), the target spread evenly over a row's positives."""
    logits = scale * img @ txt.t()
    if positives is None:
        labels = torch.arange(len(img), device=img.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
    p = positives.float()
    return 0.5 * (soft_cross_entropy(logits, p / p.sum(1, keepdim=True))
                  + soft_cross_entropy(logits.t(), p.t() / p.t().sum(1, keepdim=True)))


def affinity_mimicking(s_a: torch.Tensor, s_b: torch.Tensor, t_a: torch.Tensor, t_b: torch.Tensor,
                       scale: float = 50.0) -> torch.Tensor:
    """TinyCLIP: ½ CE(A->B) + ½ CE(B->A) of the student's affinities against the teacher's (softmax over the batch).

    Image-text: a = image, b = text embeddings. Text-only distillation uses a = the student's sentence
    embeddings, b = the teacher's (fixed anchors), and the teacher's text-text affinity as the target."""
    s = scale * s_a @ s_b.t()
    with torch.no_grad():
        t = scale * t_a @ t_b.t()
    return 0.5 * (soft_cross_entropy(s, t.softmax(-1)) + soft_cross_entropy(s.t(), t.t().softmax(-1)))


def similarity_kd(s_img: torch.Tensor, s_txt: torch.Tensor, t_img: torch.Tensor, t_txt: torch.Tensor,
                  scale: float = 100.0) -> torch.Tensor:
    """MobileCLIP KD: KL from the teachers' image-text similarity matrices (softmax over the batch, averaged
    over the ensemble) to the student's, in both directions. t_img: (B, D) for one teacher or (B, T, D) for
    an ensemble of T; t_txt: (B, D). 0 means a perfect match."""
    s = scale * s_img @ s_txt.t()
    with torch.no_grad():
        t = t_img if t_img.ndim == 3 else t_img[:, None]
        t_logits = scale * torch.einsum("bkd,cd->kbc", t.float(), t_txt.float())  # (T, B, B)
        i2t = t_logits.softmax(-1).mean(0)
        t2i = t_logits.transpose(1, 2).softmax(-1).mean(0)

    def kl(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (target * (target.clamp_min(1e-12).log() - F.log_softmax(logits, -1))).sum(-1).mean()

    return 0.5 * (kl(s, i2t) + kl(s.t(), t2i))


def cosine_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean 1 - cos(student_i, teacher_i)."""
    return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()
