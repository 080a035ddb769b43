"""How long each training stage runs for the data's size (epochs and optimizer steps), and the warnings a build
gives when a stage ran too few steps or the teacher is weak on val.

Training length follows the data: `steps` (when given) or `epochs`, grown to at least `min_steps` optimizer
steps, so a folder of a thousand images does not get a teacher trained for a few dozen steps. The labels-only
baseline trains for as many steps as distillation (its own epochs over the labeled images alone).
`pocketvit validate` prints the plan without loading a single image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pocketvit.distill.trainer import plan_epochs
from pocketvit.recipe import Recipe

FEW_STEPS = 200  # a training stage with fewer optimizer steps is flagged in the log and the report
LOW_TEACHER_VAL = 0.7  # a teacher below this val top-1 is flagged: the student learns its mistakes


@dataclass(frozen=True)
class StagePlan:
    stage: str
    images: int
    batch_size: int
    epochs: int

    @property
    def steps_per_epoch(self) -> int:
        return max(1, -(-self.images // self.batch_size))

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def describe(self) -> str:
        return (f"{self.stage}: {self.steps} optimizer steps ({self.epochs} epoch(s) x {self.steps_per_epoch} steps "
                f"of {self.batch_size} over {self.images} images)")


def teacher_plan(recipe: Recipe, labeled: int, trains: bool) -> StagePlan | None:
    """The teacher's training (None when it is used as it comes)."""
    if not trains:
        return None
    t = recipe.teacher.train
    spe = -(-labeled // t.batch_size)
    stage = "teacher (fine-tune)" if recipe.teacher.pretrained else "teacher"
    return StagePlan(stage, labeled, t.batch_size, plan_epochs(t.epochs, spe, t.steps, t.min_steps))


def distill_plan(recipe: Recipe, train: int) -> StagePlan:
    d = recipe.distill
    spe = -(-train // d.batch_size)
    return StagePlan("distill", train, d.batch_size, plan_epochs(d.epochs, spe, d.steps, d.min_steps))


def baseline_plan(recipe: Recipe, train: int, labeled: int) -> StagePlan:
    """Same optimizer steps as distillation, over the labeled images only."""
    distill = distill_plan(recipe, train)
    if labeled == train:
        return StagePlan("baseline", labeled, distill.batch_size, distill.epochs)
    spe = -(-labeled // distill.batch_size)
    return StagePlan("baseline", labeled, distill.batch_size, plan_epochs(1, spe, distill.steps))


def teacher_trains(recipe: Recipe) -> bool:
    """Whether the build trains its teacher (from scratch, further, or fine-tuned on the data's classes)."""
    from pocketvit.distill.pretrained import wants_finetune
    from pocketvit.models.teachers import is_pretrained

    t = recipe.teacher
    if is_pretrained(t):
        return wants_finetune(t)
    return t.checkpoint is None or t.finetune


def describe_plan(recipe: Recipe) -> list[str]:
    """One line per training stage of a classification recipe, from the image counts alone."""
    from pocketvit.data import count_images

    counts = count_images(recipe.data, recipe.seed)
    train = counts["train"] + counts["unlabeled"]
    lines = [f"data: {counts['train']} labeled training images" + (f" + {counts['unlabeled']} unlabeled"
                                                                   if counts["unlabeled"] else "")
             + f", {counts['val']} val"]
    plans = [teacher_plan(recipe, counts["train"], teacher_trains(recipe)), distill_plan(recipe, train)]
    if recipe.distill.baseline and counts["train"]:
        plans.append(baseline_plan(recipe, train, counts["train"]))
    for p in plans:
        if p is None:
            continue
        lines.append(p.describe() + ("  (few steps: raise epochs, steps or min_steps)" if p.steps < FEW_STEPS else ""))
    if plans[0] is None:
        from pocketvit.models.teachers import is_pretrained

        how = "used as it comes" if is_pretrained(recipe.teacher) else "loaded from teacher.checkpoint"
        lines.insert(1, f"teacher: {how} (no training)")
    return lines


def training_warnings(teacher: dict[str, Any] | None, student: dict[str, Any] | None,
                      baseline: dict[str, Any] | None) -> list[str]:
    """What a user should know about the run's training (from the stages' records, so a cached rerun says it
    too): too few optimizer steps, a teacher weak on val."""
    out = []
    for who, meta in (("teacher", teacher), ("distill", student), ("baseline", baseline)):
        run = (meta or {}).get("train")
        for i, r in enumerate(run if isinstance(run, list) else [run] if run else []):
            name = who if not isinstance(run, list) else f"{who} member {i + 1}"
            planned = r.get("planned_epochs", r.get("epochs", 0)) * r.get("steps_per_epoch", 0)
            if r and planned < FEW_STEPS:  # planned: a run that early stopping shortened was long enough to try
                out.append(f"{name} trained for only {planned} optimizer steps ({r['planned_epochs']} epoch(s) of "
                           f"{r['steps_per_epoch']}); it is likely undertrained: raise {_key(who)}.epochs, "
                           f"{_key(who)}.steps or {_key(who)}.min_steps")
    val = (teacher or {}).get("val_top1")
    if val is not None and val < LOW_TEACHER_VAL:
        out.append(f"the teacher's val top-1 is {val:.3f} (below {LOW_TEACHER_VAL}): the student learns its mistakes; "
                   "train it longer, fine-tune a pretrained teacher (teacher.pretrained + teacher.finetune), or add "
                   "labeled images")
    return out


def _key(who: str) -> str:
    return "teacher.train" if who == "teacher" else "distill"
