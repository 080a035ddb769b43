"""An honest CLIP image teacher where no pretrained CLIP image tower is available offline.

A trained image classifier (the shipped Fashion-MNIST ResNet teacher) is frozen; a linear projection from
its pooled features into the text teacher's embedding space is trained LiT-style ("locked-image, locked
text" here: both towers frozen, only the projection learns) with the CLIP loss against the locked text
embeddings of the training captions. Several checkpoints give an ensemble (one projection each).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pocketvit.errors import RecipeError


def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The classifier's features before its last linear layer (timm: pre_logits; pocketvit-resnet: pooled map)."""
    if hasattr(model, "forward_head") and hasattr(model, "forward_features"):
        return model.forward_head(model.forward_features(x), pre_logits=True)
    if hasattr(model, "stem") and hasattr(model, "blocks"):  # pocketvit-resnet
        return model.blocks(model.stem(x)).mean((2, 3))
    raise RecipeError(f"clip image teacher: cannot take pooled features of {type(model).__name__}; use "
                      "pocketvit-resnet or a timm model")


class ProjectedTeacher(nn.Module):
    """Frozen classifier features -> linear projection -> L2-normalised embedding in the text space."""

    def __init__(self, backbone: nn.Module, feature_dim: int, embed_dim: int):
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.proj = nn.Linear(feature_dim, embed_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return pooled_features(self.backbone, x)

    def project(self, feats: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(feats), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(x))


def feature_dim(backbone: nn.Module, shape: tuple[int, int, int]) -> int:
    with torch.no_grad():
        return int(pooled_features(backbone.eval(), torch.zeros(1, *shape)).shape[1])


@torch.no_grad()
def all_features(teacher: ProjectedTeacher, batches: Iterator[torch.Tensor], total: int) -> torch.Tensor:
    from pocketvit.progress import progress_bar

    teacher.eval()
    out = []
    with progress_bar("image teacher features", total) as advance:
        dev = next(teacher.parameters()).device
        for x in batches:
            out.append(teacher.features(x.to(dev)).float())
            advance(len(x))
    return torch.cat(out)


def train_projection(teacher: ProjectedTeacher, feats: torch.Tensor, labels: torch.Tensor, captions: np.ndarray,
                     caption_emb: torch.Tensor, epochs: int, batch_size: int, lr: float, scale: float,
                     seed: int) -> list[float]:
    """LiT-style: CLIP loss between projected features and one of each image's caption embeddings (drawn
    per epoch), every same-class pair a positive. Returns the mean loss per epoch."""
    from pocketvit.clip.losses import clip_loss

    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(teacher.proj.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * -(-len(feats) // batch_size))
    caps = torch.from_numpy(np.asarray(captions, dtype=np.int64))
    caption_emb, labels = caption_emb.to(feats.device), labels.to(feats.device)
    history = []
    for _ in range(epochs):
        order = torch.randperm(len(feats), generator=g)
        pick = torch.randint(caps.shape[1], (len(feats),), generator=g)
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            txt = caption_emb[caps[idx, pick[idx]].to(feats.device)]
            y = labels[idx.to(feats.device)]
            loss = clip_loss(teacher.project(feats[idx.to(feats.device)]), txt, scale, positives=y[:, None] == y[None, :])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / len(feats))
    return history


class OpenClipImageTeacher(nn.Module):
    """An open_clip image tower (already in its text tower's space: no projection) with its own preprocessing:
    the student's normalised input goes back to pixels in [0, 1], gray is repeated to RGB, the image is resized
    to the tower's size and normalised with the tower's mean/std (timm-style re-normalisation)."""

    def __init__(self, encoder: nn.Module, student_mean: list[float], student_std: list[float]):
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        pre = encoder.preprocess
        self.size = tuple(pre["size"])
        for name, v in (("s_mean", student_mean), ("s_std", student_std), ("t_mean", pre["mean"]),
                        ("t_std", pre["std"])):
            self.register_buffer(name, torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        px = x * self.s_std + self.s_mean
        if px.shape[1] == 1:
            px = px.repeat(1, 3, 1, 1)
        px = F.interpolate(px, size=self.size, mode="bilinear", align_corners=False)
        return self.encoder.encode_image((px - self.t_mean) / self.t_std)
