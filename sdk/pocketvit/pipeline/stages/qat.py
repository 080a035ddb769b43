"""The `quantize-qat` build stage: decide whether QAT runs (quantize.qat), run it (qat.py), hand its weights
to the PT2E int8 exports (executorch-int8, litert-int8) and say in the export info what happened.

Hashed and resumable like every stage: its config holds the QAT settings and what decides it (budget,
held-out images, the distill loss), and it depends on the student, the quantize plan and the teacher cache.
When QAT does not run (auto and PTQ met the budget, or an error-free skip), the int8 exports keep the
plan's dependencies, so builds that never needed QAT keep their stage hashes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pocketvit.progress import log

ModelFn = Callable[[], Any]


def _label_batches(splits: Any, batch_size: int, seed: int) -> Callable[[int], Any]:
    """Shuffled, un-augmented training images with their labels (no teacher: QAT trains on labels)."""
    import torch

    def batches(epoch: int):
        order = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            yield splits.normalize(splits.train.images[idx]), splits.train.labels[idx]

    return batches


def _fp32_teacher(batches: Callable[[int], Any], model_fn: ModelFn, temperature: float):
    """(batches with the fp32 student's own logits as targets, KD loss): QAT keeps the int8 model close to
    the float one it replaces (top-1 agreement with the fp32 files), on the same training images."""
    import torch

    from pocketvit.export.prepare import prepare_for_export

    ref = prepare_for_export(model_fn(), unfused_attention=True)

    def with_logits(epoch: int):
        for x, _ in batches(epoch):
            with torch.no_grad():
                logits = ref.to(x.device)(x)
            yield x, logits  # outside no_grad: the consumer trains while this generator waits here

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = temperature
        p = torch.softmax(target / t, dim=1)
        return -(p * torch.log_softmax(logits / t, dim=1)).sum(1).mean() * t * t

    return with_logits, loss


def _training(recipe: Any, splits: Any, cache: Any, model_fn: ModelFn | None = None
              ) -> tuple[Callable[[int], Any], Callable, str]:
    """(batches(epoch), loss_fn, description): the teacher cache's sparse KD loss, else labels; with
    quantize.qat_teacher: fp32 the fp32 student's logits on the same images instead."""
    batches, loss, what = _cache_or_labels(recipe, splits, cache)
    if recipe.quantize.qat_teacher == "fp32" and model_fn is not None:
        t = recipe.distill.temperature
        batches, loss = _fp32_teacher(batches, model_fn, t)
        what = f"distillation from the fp32 student (T={t:g}) on {'the cache' if cache is not None else 'training'} images"
    return batches, loss, what


def _cache_or_labels(recipe: Any, splits: Any, cache: Any) -> tuple[Callable[[int], Any], Callable, str]:
    import torch.nn.functional as F

    from pocketvit.errors import DataError
    from pocketvit.export.quantize.calibration import training_split

    training_split(splits, "QAT")  # the teacher cache and the labels below both index the training split
    d = recipe.distill
    if cache is not None:
        from pocketvit.data.augment import AugmentConfig
        from pocketvit.distill.cache import TeacherCache
        from pocketvit.distill.losses import sparse_kd_loss

        reader = TeacherCache(cache.path / "cache", len(splits.train))
        aug = AugmentConfig(**recipe.data.augment.model_dump())
        cached = max(1, int(cache.meta["epochs"]))
        shuffle = recipe.seed + 7919  # another order than the distill stage's

        def batches(epoch: int):
            return reader.batches(splits, aug, epoch % cached, d.batch_size, shuffle)

        return batches, sparse_kd_loss(d.temperature), f"distillation (teacher cache, T={d.temperature:g})"
    if not splits.labeled:
        raise DataError("quantize.qat: no teacher cache and no labels to train on; set quantize.qat: never")
    return _label_batches(splits, d.batch_size, recipe.seed), F.cross_entropy, "labels (cross-entropy)"


def qat_stage_fn(recipe: Any, model_fn: ModelFn, plan: Any, cache: Any, splits: Any,
                 spec: dict[str, Any]) -> Callable[[Path], dict]:
    def run(path: Path) -> dict[str, Any]:
        import time

        import torch

        from pocketvit.export.quantize.calibration import held_out_images, plan_calibration
        from pocketvit.export.quantize.qat import (
            WEIGHTS_FILE,
            QATSettings,
            decide,
            keep_qat,
            ptq_scores,
            qat_finetune,
        )
        from pocketvit.models.weights import save_weights

        q = recipe.quantize
        per_channel = q.weights == "per-channel"
        example = torch.zeros(1, spec["channels"], spec["height"], spec["width"])
        calib = plan_calibration(plan, splits)
        hx, hy = held_out_images(splits, q.held_out_images, recipe.seed + 1)
        s = plan.meta.get("sensitivity")
        if s:  # the plan already measured all-int8 PTQ on the same held-out images
            before = {"fp32_top1": s["fp32_top1"], "top1": s["steps"][0]["top1"], "agreement": s["steps"][0]["agreement"]}
        else:
            before = ptq_scores(model_fn(), example, calib, hx, hy, per_channel=per_channel)
        ran, why = decide(q.qat, before, q.budget, q.min_agreement)
        meta: dict[str, Any] = {"mode": q.qat, "ran": ran, "reason": why, "before": before,
                                "held_out_images": len(hx)}
        log(f"  QAT: {why}")
        if not ran:
            return meta
        batches, loss_fn, what = _training(recipe, splits, cache, model_fn)
        steps = -(-len(splits.train) // recipe.distill.batch_size)
        settings = QATSettings(epochs=q.qat_epochs, lr=q.qat_lr, seed=recipe.seed)
        t0 = time.perf_counter()
        model, _, losses = qat_finetune(model_fn(), example, batches, loss_fn, settings, steps,
                                        make_quantizer=_qat_quantizer(per_channel))
        save_weights(model, path / WEIGHTS_FILE)
        meta |= {"loss": what, "epochs": q.qat_epochs, "lr": q.qat_lr, "train_images": len(splits.train),
                 "epoch_losses": losses, "seconds": round(time.perf_counter() - t0, 1)}
        if q.sensitivity:  # choose the float layers again, on the QAT weights
            from pocketvit.export.quantize.pt2e import xnnpack_quantizer
            from pocketvit.export.quantize.sensitivity import choose_float_layers

            r = choose_float_layers(model, example, calib, hx, hy, xnnpack_quantizer(per_channel=per_channel),
                                    q.budget, min_agreement=q.min_agreement, what="int8 after QAT",
                                    reference=model_fn())  # drop and agreement vs the fp32 student that ships
            meta["after"] = {"fp32_top1": r.fp32_top1, "top1": r.all_int8_top1, "agreement": r.steps[0]["agreement"],
                             "final_top1": r.final_top1, "final_agreement": r.steps[-1]["agreement"]}
            meta["float_layers"] = r.float_layers
            meta["sensitivity"] = {k: v for k, v in r.to_dict().items() if k != "ranking"}
            ptq_met, ptq_float = bool(s["met"]), len(plan.meta["float_layers"])
        else:
            a = ptq_scores(model, example, calib, hx, hy, per_channel=per_channel, reference=model_fn())
            meta["after"] = a | {"final_top1": a["top1"], "final_agreement": a["agreement"]}
            meta["float_layers"] = []
            ptq_met, ptq_float = not decide("auto", before, q.budget, q.min_agreement)[0], 0
        meta["used"], meta["use"] = keep_qat(meta["after"], len(meta["float_layers"]), ptq_met, ptq_float, q.budget,
                                             q.min_agreement)
        if q.qat == "always" and not meta["used"]:  # asked for: shipped anyway, the report says what auto would do
            meta["used"], meta["use"] = True, f"QAT weights used (quantize.qat: always; auto would not: {meta['use']})"
        log(f"  QAT: held-out top-1 all-int8 {before['top1']:.4f} (PTQ) -> {meta['after']['top1']:.4f} (QAT); "
            f"{meta['use']}")
        return meta

    return run


def _qat_quantizer(per_channel: bool):
    from pocketvit.export.quantize.pt2e import xnnpack_quantizer

    return xnnpack_quantizer(per_channel=per_channel, is_qat=True)


def run_qat(recipe: Any, runner: Any, student: Any, plan: Any, cache: Any, splits: Any, spec: dict[str, Any],
            model_fn: ModelFn):
    """The quantize-qat stage (None when quantize.qat is never or no PT2E int8 target is listed)."""
    from pocketvit.export.quantize.qat import QAT_TARGETS

    q = recipe.quantize
    if q.qat == "never" or not any(t.split("-", 1)[0] in QAT_TARGETS for t in recipe.export.targets
                                   if t.endswith("-int8")):
        return None
    cfg = {"mode": q.qat, "epochs": q.qat_epochs, "lr": q.qat_lr, "budget": q.budget,
           "min_agreement": q.min_agreement, "sensitivity": q.sensitivity, "held_out_images": q.held_out_images,
           "weights": q.weights, "seed": recipe.seed, "batch_size": recipe.distill.batch_size,
           "temperature": recipe.distill.temperature if cache is not None or q.qat_teacher == "fp32" else None}
    if q.qat_teacher != "cache":
        cfg["teacher"] = q.qat_teacher
    deps = [student, plan] + ([cache] if cache is not None else [])
    return runner.run("quantize-qat", cfg, deps, qat_stage_fn(recipe, model_fn, plan, cache, splits, spec))


def qat_model_fn(stage: Any, model_fn: ModelFn) -> ModelFn:
    """The export-prepared student with the QAT weights loaded."""

    def load():
        from pocketvit.export.prepare import prepare_for_export
        from pocketvit.export.quantize.qat import WEIGHTS_FILE
        from pocketvit.models.weights import load_weights

        return load_weights(prepare_for_export(model_fn(), unfused_attention=True), stage.path / WEIGHTS_FILE,
                            "QAT weights")

    return load


def qat_summary(meta: dict[str, Any]) -> dict[str, Any]:
    """What the export info and the report say about QAT."""
    keep = ("mode", "ran", "reason", "used", "use", "before", "after", "loss", "epochs", "lr", "float_layers",
            "seconds")
    return {k: meta[k] for k in keep if k in meta}
