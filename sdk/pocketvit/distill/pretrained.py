"""The build's teacher stage for a pretrained teacher (models/teachers.py): used as it comes, or fine-tuned on the
data's classes (distill/finetune.py); and teacher agreement.

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
from pocketvit.recipe.schema import stable_dump

SPLITS = ("val", "test")


@dataclass
class PretrainedTeacher:
    """What the build needs before the teacher stage runs: its cache key, its classes, and how to load it."""

    recipe: Any
    base_dir: Path
    splits: Splits
    labels: list[str]
    config: dict[str, Any]
    heads: list[str] | None = None  # per member when fine-tuned: "new" or "keep"; None: used as it comes
    epochs: int = 0  # fine-tuning epochs (teacher.train planned for the data's size)
    weights: Path | None = None  # the fine-tuned weights, once the teacher stage has run

    @property
    def finetuned(self) -> bool:
        return self.heads is not None

    def load_base(self):
        """The teacher as it comes (pretrained weights; for fine-tuning, new heads for the data's classes)."""
        from pocketvit.distill.finetune import prepare_network
        from pocketvit.models.teachers import load_teacher

        loaded = load_teacher(self.recipe.teacher, self.base_dir, self.splits, same_classes=not self.finetuned)
        if self.finetuned:
            for adapter, mode in zip(_members(loaded.model), self.heads):
                prepare_network(adapter, mode, len(self.splits.labels))
            loaded.labels = list(self.splits.labels)
        return loaded

    def load(self):
        """The teacher the cache records: as it comes, or with the fine-tuned weights of the teacher stage."""
        loaded = self.load_base()
        if self.finetuned:
            from pocketvit.models.weights import load_weights

            if self.weights is None:
                raise RecipeError("the fine-tuned teacher is loaded before its stage ran")  # pragma: no cover
            load_weights(loaded.model, self.weights, "teacher (fine-tuned)")
        return loaded

    def stage_fn(self) -> Callable[[Path], dict[str, Any]]:
        if self.finetuned:
            return self._finetune_stage
        return lambda path: teacher_stage(self.load(), self.splits, path)

    def _finetune_stage(self, path: Path) -> dict[str, Any]:
        from pocketvit.data.augment import AugmentConfig
        from pocketvit.distill.finetune import finetune_member
        from pocketvit.distill.trainer import resolve_precision
        from pocketvit.models.weights import save_weights, weights_path

        t = self.recipe.teacher
        loaded = self.load_base()
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        loaded.model.to(device)
        # auto: bf16 where the hardware computes it natively. Never chosen by timing: a stage's result must not
        # depend on how busy the machine was (the same recipe gave two different teachers when it did)
        precision = resolve_precision(t.train.precision or "auto", device)
        aug = AugmentConfig(**self.recipe.data.augment.model_dump())
        members = _members(loaded.model)
        records = []
        for i, (adapter, mode) in enumerate(zip(members, self.heads)):
            who = "teacher" if len(members) == 1 else f"teacher member {i + 1}/{len(members)}"
            work = path if len(members) == 1 else path / f"member-{i}"
            work.mkdir(parents=True, exist_ok=True)
            records.append(finetune_member(adapter, self.splits, aug, self.recipe.seed, t.train, mode, t.init,
                                           self.epochs, precision, work, who))
        loaded.model.eval()
        save_weights(loaded.model, weights_path(path, "teacher"))
        meta = teacher_stage(loaded, self.splits, path)
        meta |= {"finetuned": True, "init": t.init, "precision": records[0]["precision"],
                 "train": records[0]["train"] if len(records) == 1 else [r["train"] for r in records],
                 "members_finetune": records}
        return meta


def _members(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The TeacherAdapter of each member (one unless the teacher is an ensemble)."""
    from pocketvit.models.teachers import EnsembleTeacher

    return list(model.members) if isinstance(model, EnsembleTeacher) else [model]


def wants_finetune(teacher: Any) -> bool:
    """A pretrained teacher trained further on the data's classes: teacher.finetune, or teacher.head: new."""
    return bool(teacher.finetune or teacher.head == "new")


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
        if t.head == "new" or t.init == "random":
            key = "teacher.head: new" if t.head == "new" else "teacher.init: random"
            raise RecipeError(f"{key} applies to a pretrained teacher being fine-tuned (teacher.pretrained: true, "
                              "teacher.finetune: true); a teacher trained by the build gets the data's classes anyway")
        if not splits.labeled:
            raise RecipeError(f"{splits.name} has no labels, so the build cannot train a teacher on it: use a "
                              "teacher as it comes (teacher.pretrained: true with efficientnet-lite:lite0 or "
                              "timm:NAME + checkpoint, open_clip:, a build directory, or teacher.ensemble), or "
                              "give the images class folders")
        return None
    finetune = wants_finetune(t)
    if t.init == "random" and not finetune:
        raise RecipeError("teacher.init: random trains the teacher from random weights, so it needs "
                          "teacher.finetune: true (a teacher used as it comes with random weights predicts nothing)")
    if finetune and not splits.labeled:
        raise RecipeError(f"teacher.finetune trains the teacher on the data's labels, and {splits.name} has no "
                          "labels; give the images class folders, or use the teacher as it comes (drop finetune)")
    base = recipe_path.parent
    loaded = load_teacher(t, base, splits, same_classes=not finetune)
    specs = member_specs(t)
    if finetune:
        heads = _head_modes(t, loaded, splits)
        from pocketvit.distill.trainer import plan_epochs

        spe = -(-len(splits.labeled_train) // t.train.batch_size)
        epochs = plan_epochs(t.train.epochs, spe, t.train.steps, t.train.min_steps)
        cfg = {"members": fingerprint(specs, base), "labels": len(splits.labels), "heads": heads, "init": t.init,
               "train": training_config(stable_dump(t.train), epochs)}
        return PretrainedTeacher(recipe, base, splits, list(splits.labels), cfg, heads, epochs)
    if splits.labeled and len(loaded.labels) != len(splits.labels):
        raise RecipeError(
            f"teacher {loaded.arch} predicts {len(loaded.labels)} classes but {splits.name} has {len(splits.labels)} "
            "class folders; fine-tune it on them (teacher.finetune: true gives it a head for the data's classes), "
            "distill the teacher's own classes with data.labels: none, or use a teacher for these classes (an "
            "open_clip zero-shot head, a checkpoint trained on them, a build directory)")
    if not splits.labeled:
        splits.labels = list(loaded.labels)
    cfg = {"members": fingerprint(specs, base), "labels": len(loaded.labels)}
    return PretrainedTeacher(recipe, base, splits, list(loaded.labels), cfg)


def _head_modes(t: Any, loaded: Any, splits: Splits) -> list[str]:
    """Per member: `new` (a head for the data's classes) or `keep` (its own head already predicts them)."""
    from pocketvit.models.teachers import member_specs

    modes = []
    for spec, labels in zip(member_specs(t), loaded.member_labels or [loaded.labels]):
        if t.head == "keep" and len(labels) != len(splits.labels):
            raise RecipeError(f"teacher.head: keep, but teacher {spec['arch']} predicts {len(labels)} classes and the "
                              f"data has {len(splits.labels)}; use teacher.head: new (or auto)")
        same = list(labels) == list(splits.labels)
        modes.append("keep" if t.head == "keep" or (t.head == "auto" and same) else "new")
    return modes


def training_config(train: dict[str, Any], epochs: int) -> dict[str, Any]:
    """A training section for a stage hash: the epochs that actually run in place of the policy that chose
    them (steps, min_steps), so a run of the same length keeps its stage whichever way it was asked for."""
    out = {k: v for k, v in train.items() if k not in ("steps", "min_steps")}
    out["epochs"] = epochs
    return out


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


def val_score(model: torch.nn.Module, splits: Splits, who: str) -> float:
    """Early stopping's score: val top-1, or val teacher agreement on label-free data."""
    pred = top1(model, splits, splits.val, f"{who} val")
    if splits.labeled:
        return accuracy(pred, splits.val)
    agree = agreement(pred, splits.val)
    if agree is None:
        raise RecipeError("early stopping (patience) needs labels or a pretrained teacher's predictions on val")
    return agree


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
