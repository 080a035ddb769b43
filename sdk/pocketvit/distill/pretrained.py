"""The build's teacher stage for a teacher used as it comes (models/teachers.py), and teacher agreement.

The stage records the teacher's size and its top-1 class on every held-out image (val and test, saved
beside it). Those predictions travel with the splits (`ImageSet.teacher_top1`), so every later measure
can report `teacher_agreement`: the fraction of held-out images where a model's top-1 equals the
teacher's. On label-free data that is the figure (there is no label accuracy to report); on labeled
data it is reported beside top-1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pocketvit.data.datasets import ImageSet, Splits, plain_batches
from pocketvit.errors import RecipeError
from pocketvit.progress import log

SPLITS = ("val", "test")


@dataclass
class PretrainedTeacher:
    """What the build needs before the teacher stage runs: its cache key, its classes, and how to load it."""

    recipe: Any
    base_dir: Path
    splits: Splits
    labels: list[str]
    config: dict[str, Any]

    def load(self):
        from pocketvit.models.teachers import load_teacher

        return load_teacher(self.recipe.teacher, self.base_dir, self.splits)

    def stage_fn(self) -> Callable[[Path], dict[str, Any]]:
        return lambda path: teacher_stage(self.load(), self.splits, path)


def prepare(recipe: Any, recipe_path: Path, splits: Splits) -> PretrainedTeacher | None:
    """None when the build trains its own teacher. Otherwise load the teacher once to learn its classes; on
    label-free data they become the data's (and the bundle's) labels."""
    from pocketvit.models.teachers import fingerprint, is_pretrained, load_teacher, member_specs

    t = recipe.teacher
    if not splits.labeled:
        needs = [f"export.targets {x}" for x in recipe.export.targets if x.endswith("-int8")]
        needs += ["exits"] if recipe.exits is not None else []
        if needs:
            raise RecipeError(f"{', '.join(needs)}: int8 budgets and exit calibration are measured as top-1 on "
                              f"labeled held-out images, and {splits.name} has no labels; drop them for this build")
    if not is_pretrained(t):
        if not splits.labeled:
            raise RecipeError(f"{splits.name} has no labels, so the build cannot train a teacher on it: use a "
                              "teacher as it comes (teacher.pretrained: true with efficientnet-lite:lite0 or "
                              "timm:NAME + checkpoint, open_clip:, a build directory, or teacher.ensemble), or "
                              "give the images class folders")
        return None
    if t.finetune:
        raise RecipeError("teacher.finetune: a teacher used as it comes is not trained further by the build; "
                          "drop finetune (or teacher.pretrained to train it from scratch on the data)")
    base = recipe_path.parent
    loaded = load_teacher(t, base, splits)
    if splits.labeled and len(loaded.labels) != len(splits.labels):
        raise RecipeError(
            f"teacher {loaded.arch} predicts {len(loaded.labels)} classes but {splits.name} has {len(splits.labels)} "
            "class folders; distill the teacher's own classes with data.labels: none, or use a teacher for these "
            "classes (an open_clip zero-shot head, a checkpoint trained on them, a build directory)")
    if not splits.labeled:
        splits.labels = list(loaded.labels)
    cfg = {"members": fingerprint(member_specs(t), base), "labels": len(loaded.labels)}
    return PretrainedTeacher(recipe, base, splits, list(loaded.labels), cfg)


@torch.no_grad()
def top1(model: torch.nn.Module, splits: Splits, data: ImageSet, description: str, batch_size: int = 250
         ) -> np.ndarray:
    """Eager top-1 class of every image of an un-augmented split."""
    from pocketvit.distill.trainer import predict_logits

    logits = predict_logits(model, (splits.normalize(x) for x, _ in plain_batches(data, batch_size)), len(data),
                            description)
    return logits.argmax(1).numpy().astype(np.int64)


def teacher_stage(loaded: Any, splits: Splits, path: Path) -> dict[str, Any]:
    from pocketvit.models.stats import count_gflops, count_params
    from pocketvit.runtime.io import atomic_path

    model = loaded.model.to(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    meta: dict[str, Any] = {"arch": loaded.arch, "options": {}, "pretrained": True, "params": count_params(model),
                            "gflops": round(count_gflops(model, splits.shape), 6), "inputs": loaded.inputs,
                            "notes": loaded.notes}
    for split in SPLITS:
        data = getattr(splits, split)
        pred = top1(model, splits, data, f"teacher {split}")
        with atomic_path(path / f"{split}_teacher_top1.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, pred)
        meta[f"{split}_top1"] = accuracy(pred, data) if splits.labeled else None
    return meta


def attach(teacher_dir: Path, splits: Splits) -> None:
    """Put the teacher's held-out top-1 (from its stage folder) on the splits, for agreement measures."""
    for split in SPLITS:
        data = getattr(splits, split)
        pred = np.load(teacher_dir / f"{split}_teacher_top1.npy", allow_pickle=False)
        if len(pred) != len(data):
            raise RecipeError(f"{teacher_dir}: teacher predictions for {len(pred)} {split} images, the split has "
                              f"{len(data)}; rebuild with --fresh")
        data.teacher_top1 = torch.from_numpy(pred)


def accuracy(pred: np.ndarray, data: ImageSet) -> float:
    return float((pred == data.labels.numpy()).mean())


def agreement(pred: np.ndarray, data: ImageSet) -> float | None:
    """Fraction of images whose top-1 equals the teacher's; None when the split carries no teacher predictions."""
    ref = getattr(data, "teacher_top1", None)
    return None if ref is None else float((np.asarray(pred) == ref.numpy()).mean())


def held_out_scores(model: torch.nn.Module, splits: Splits, who: str) -> dict[str, float | None]:
    """val/test top-1 (None on label-free data) and, with a pretrained teacher, val/test teacher agreement."""
    out: dict[str, float | None] = {}
    for split in SPLITS:
        data = getattr(splits, split)
        pred = top1(model, splits, data, f"{who} {split}")
        out[f"{split}_top1"] = accuracy(pred, data) if splits.labeled else None
        agree = agreement(pred, data)
        if agree is not None:
            out[f"{split}_teacher_agreement"] = agree
    return out


def describe(meta: dict[str, Any], who: str) -> str:
    """'test top-1 0.8123' and/or 'teacher agreement 0.4500' for the build's log lines."""
    parts = []
    if meta.get("test_top1") is not None:
        parts.append(f"test top-1 {meta['test_top1']:.4f}")
    if meta.get("test_teacher_agreement") is not None:
        parts.append(f"test teacher agreement {meta['test_teacher_agreement']:.4f}")
    if not parts and meta.get("pretrained"):
        parts.append("used as it comes: its top-1 is the reference for teacher agreement")
    return f"  {who} " + (", ".join(parts) or "(no held-out measure)")


def log_skipped_baseline() -> None:
    log("  baseline (labels only): skipped, the data has no labels")
