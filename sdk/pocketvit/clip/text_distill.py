"""TinyCLIP on text, for real: inherit a 2-3 layer encoder from all-MiniLM-L6-v2, distil it with affinity
mimicking (+ cosine) on real sentences, and measure how close its embeddings stay to the teacher's on
held-out sentences — before and after distillation, and for a randomly initialised student of the same
shape trained with the same budget.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pocketvit.progress import log


@dataclass
class TextDistillConfig:
    teacher: str = "minilm"  # minilm | hf:/folder (a transformers encoder: inheritance needs its layers)
    layers: int = 3
    heads: int | None = None  # leading heads kept (width = heads * head size); None = all
    intermediate: int | None = None  # leading FFN channels kept; None = all
    epochs: int = 4
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.01
    scale: float = 50.0  # TinyCLIP's fixed logit scale
    affinity_weight: float = 1.0
    cosine_weight: float = 1.0
    random_baseline: bool = True  # also train a randomly initialised student of the same shape
    train_limit: int | None = None
    heldout_limit: int | None = None
    seed: int = 0


class _PackedEncoder(nn.Module):
    """The trainer feeds one tensor: input ids and attention mask stacked as (B, 2, T)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        return self.encoder(packed[:, 0], packed[:, 1])


def mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=-1).mean())


def retrieval_top1(student: torch.Tensor, teacher: torch.Tensor) -> float:
    """Fraction of sentences whose student embedding is nearest to its own teacher embedding among all of them."""
    return float(((student @ teacher.t()).argmax(1) == torch.arange(len(student))).float().mean())


def _batches(encoder: Any, sentences: list[str], targets: torch.Tensor, batch_size: int, seed: int):
    def run(epoch: int):
        order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(len(sentences)))
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            tok = encoder.tokenize([sentences[j] for j in idx.tolist()])
            yield torch.stack([tok["input_ids"], tok["attention_mask"]], 1), targets[idx]

    return run


def train_text_student(student: Any, sentences: list[str], targets: torch.Tensor, cfg: TextDistillConfig,
                       work_dir: Path, description: str) -> Any:
    """Distil `student` towards the teacher embeddings `targets` of `sentences` (affinity mimicking + cosine)."""
    from pocketvit.clip.losses import affinity_mimicking, cosine_loss
    from pocketvit.distill.trainer import TrainSettings, train

    def loss_fn(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return cfg.affinity_weight * affinity_mimicking(s, t, t, t, cfg.scale) + cfg.cosine_weight * cosine_loss(s, t)

    steps = -(-len(sentences) // cfg.batch_size)
    settings = TrainSettings(epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay, steps_per_epoch=steps,
                             channels_last=False)
    work_dir.mkdir(parents=True, exist_ok=True)
    train(_PackedEncoder(student), _batches(student, sentences, targets, cfg.batch_size, cfg.seed), loss_fn,
          settings, work_dir, description)
    return student.eval()


def save_text_encoder(encoder: Any, folder: Path) -> None:
    """A sentence-transformers-style folder (safetensors + tokenizer + pooling config): loadable as `hf:folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    encoder.model.save_pretrained(str(folder), safe_serialization=True)
    encoder.tokenizer.save_pretrained(str(folder))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}], indent=2))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": encoder.dim, f"pooling_mode_{encoder.pooling}_tokens"
        if encoder.pooling != "cls" else "pooling_mode_cls_token": True}, indent=2))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": encoder.max_length}))


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def distill_text(cfg: TextDistillConfig, out_dir: Path, teacher: Any = None,
                 corpus: tuple[list[str], list[str]] | None = None) -> dict[str, Any]:
    """Run the whole demonstration; returns (and writes to out_dir/text_student.json) the figures."""
    from pocketvit.clip.corpus import text_corpus
    from pocketvit.clip.inherit import inherit_text_encoder
    from pocketvit.models.text import load_text_encoder

    torch.manual_seed(cfg.seed)
    teacher = teacher or load_text_encoder(cfg.teacher)
    train_s, held_s = corpus or text_corpus(cfg.train_limit, cfg.heldout_limit, cfg.seed)
    log(f"text distillation: {len(train_s)} training / {len(held_s)} held-out sentences, teacher {teacher.name}")
    t_train, t_held = teacher.encode(train_s), teacher.encode(held_s)
    report: dict[str, Any] = {
        "teacher": {"name": teacher.name, "layers": teacher.model.config.num_hidden_layers,
                    "params": _params(teacher.model)},
        "sentences": {"train": len(train_s), "heldout": len(held_s),
                      "source": "Python standard-library docstrings (held-out: other modules) + Fashion-MNIST captions"},
        "config": asdict(cfg),
    }
    inits = ("inherited", "random") if cfg.random_baseline else ("inherited",)
    for init in inits:
        student, keep = inherit_text_encoder(teacher, cfg.layers, cfg.heads, cfg.intermediate,
                                             random_init=init == "random", seed=cfg.seed)
        before = student.encode(held_s)
        train_text_student(student, train_s, t_train, cfg, out_dir / f"train-{init}", f"text student ({init})")
        after = student.encode(held_s)
        report[init] = {
            "params": _params(student.model), "kept_layers": keep if init == "inherited" else None,
            "heldout_cosine_before": mean_cosine(before, t_held), "heldout_cosine_after": mean_cosine(after, t_held),
            "heldout_retrieval_top1_before": retrieval_top1(before, t_held),
            "heldout_retrieval_top1_after": retrieval_top1(after, t_held),
        }
        log(f"  {init} student ({report[init]['params'] / 1e6:.1f}M params): held-out cosine to the teacher "
            f"{report[init]['heldout_cosine_before']:.4f} before -> {report[init]['heldout_cosine_after']:.4f} after")
        if init == "inherited":
            save_text_encoder(student, out_dir / "student")
            report["student_folder"] = str(out_dir / "student")
    from pocketvit.runtime.io import write_json

    write_json(out_dir / "text_student.json", report)
    return report
