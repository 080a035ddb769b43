"""`pocketvit build` for a recipe with a `clip:` section: a zero-shot image student in the text teacher's space.

    data -> clip-text (caption + class prompt embeddings) -> clip-image-teacher (LiT projections, ensemble)
         -> clip-reinforce (seeds + ensemble embeddings per augmentation) -> clip-distill (CLIP + lambda * KD)
         -> [text-student (TinyCLIP on text)] -> export-<t> -> zeroshot-<t> (on the runtime) -> bundle + report
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pocketvit.data.augment import AugmentConfig
from pocketvit.data.datasets import Splits
from pocketvit.errors import RecipeError
from pocketvit.pipeline.context import BuildContext
from pocketvit.pipeline.runner import StageResult
from pocketvit.progress import log
from pocketvit.recipe.schema import stable_dump
from pocketvit.runtime.io import hash_config, sha256_file

OPEN_CLIP_TOWER = "open_clip"  # clip.image_teachers entry: the open_clip text teacher's image tower
CLIP_STAGES = ("clip-text", "clip-image-teacher", "clip-reinforce", "clip-distill", "text-student")


def _heldout(recipe: Any, labels: list[str]) -> list[int]:
    bad = [c for c in recipe.clip.heldout_classes if c not in labels]
    if bad:
        raise RecipeError(f"clip.heldout_classes: {bad} are not classes of {recipe.data.dataset}; use some of {labels}")
    return [labels.index(c) for c in recipe.clip.heldout_classes]


def _image_teachers(recipe: Any, recipe_path: Path, splits: Splits, embed_dim: int, heads_dir: Path | None):
    """The ensemble: each checkpoint frozen, with its projection loaded from heads_dir (or fresh when None)."""
    from pocketvit.clip.image_teacher import ProjectedTeacher, feature_dim
    from pocketvit.models.weights import build_from_meta, load_weights
    from pocketvit.recipe import resolve

    out = []
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for k, ckpt in enumerate(recipe.clip.image_teachers):
        if ckpt == OPEN_CLIP_TOWER:  # the open_clip text teacher's own image tower, already in the text space
            from pocketvit.clip.image_teacher import OpenClipImageTeacher
            from pocketvit.models.text import load_text_encoder

            if not recipe.clip.text_teacher.startswith("open_clip:"):
                raise RecipeError(f"clip.image_teachers[{k}]: 'open_clip' needs clip.text_teacher: open_clip:ARCH")
            enc = load_text_encoder(recipe.clip.text_teacher, _text_ckpt(recipe, recipe_path))
            out.append(OpenClipImageTeacher(enc, splits.mean, splits.std).eval().to(dev))
            continue
        path = resolve(ckpt, recipe_path.parent)
        if not path.is_file():
            raise RecipeError(f"clip.image_teachers[{k}]: {ckpt} not found (relative paths are from the recipe's folder)")
        backbone = load_weights(build_from_meta(recipe.teacher.model_dump(), splits), path, f"clip.image_teachers[{k}]")
        t = ProjectedTeacher(backbone, feature_dim(backbone, splits.shape), embed_dim)
        if heads_dir is not None:
            from safetensors.torch import load_file

            t.proj.load_state_dict(load_file(str(heads_dir / f"proj-{k}.safetensors")))
        out.append(t.eval().to(dev))
    return out


def _ensemble_embeddings(teachers: list, splits: Splits, images: torch.Tensor) -> np.ndarray:
    from pocketvit.clip.zeroshot import eager_embeddings

    return sum(eager_embeddings(t, splits, images) for t in teachers) / len(teachers)


def run_clip_build(recipe: Any, recipe_path: Path, out_dir: Path, fresh: bool = False,
                   until: str | None = None) -> dict[str, Any]:
    from pocketvit import __version__
    from pocketvit.clip.corpus import CLASS_NAMES, all_captions, caption_indices
    from pocketvit.clip.zeroshot import zero_shot_scores

    c = recipe.clip
    if until is not None and until not in CLIP_STAGES:
        raise RecipeError(f"--until {until!r}: not a stage of a clip recipe; use one of {', '.join(CLIP_STAGES)}")
    int8 = [t for t in recipe.export.targets if "-" in t]
    if int8:
        raise RecipeError(f"export.targets: {int8} — a clip recipe exports float targets only "
                          "(executorch, litert, onnx, coreml)")
    from pocketvit.pipeline.stages.clip_dropin import zero_shot_dropin_runtimes

    zero_shot_dropin_runtimes(recipe)  # a bad export.dropin fails before training
    from pocketvit.clip.text_bundle import check_text_encoder_option
    from pocketvit.pipeline.stages.clip_text import text_encoder_stages

    check_text_encoder_option(recipe)  # likewise a text encoder the bundle cannot carry
    ctx = BuildContext.open(recipe, recipe_path, out_dir, fresh, fingerprint=False)
    runner, aug, splits, data = ctx.runner, ctx.aug, ctx.splits, ctx.data
    heldout = _heldout(recipe, splits.labels)
    names = list(CLASS_NAMES[: len(splits.labels)])
    train_index = np.flatnonzero(~np.isin(splits.train.labels.numpy(), heldout))
    log(f"data: {splits.name} train {len(train_index)} (held-out classes {c.heldout_classes or 'none'} removed) / "
        f"test {len(splits.test)}")
    captions = all_captions()

    # text teacher: every caption and the class prompts, embedded once
    text_ckpt = _text_ckpt(recipe, recipe_path)
    text_cfg = {"teacher": c.text_teacher, "checkpoint_sha256": sha256_file(text_ckpt) if text_ckpt else None,
                "captions": hash_config(captions), "classes": names}

    def text_stage(path: Path) -> dict[str, Any]:
        from pocketvit.clip.reinforce import save_npy
        from pocketvit.clip.zeroshot import class_text_embeddings
        from pocketvit.models.text import load_text_encoder

        enc = load_text_encoder(c.text_teacher, text_ckpt)
        save_npy(path / "caption_emb.npy", enc.encode(captions).numpy().astype(np.float32))
        save_npy(path / "text_embeddings.npy", class_text_embeddings(enc, names))
        return {"teacher": getattr(enc, "name", c.text_teacher), "dim": int(enc.dim), "captions": len(captions)}

    text = runner.run("clip-text", text_cfg, [], text_stage)
    caption_emb = np.load(text.path / "caption_emb.npy")
    class_emb = np.load(text.path / "text_embeddings.npy")
    dim = text.meta["dim"]
    cap_idx = caption_indices(splits.train.labels.numpy()[train_index], splits.train.images.numpy()[train_index],
                              c.captions_per_image, recipe.seed)
    if until == "clip-text":
        return {"recipe": recipe.name, "stages": runner.summary()}

    # image teacher: frozen classifier(s) + LiT projection into the text space
    ckpts = [p if p == OPEN_CLIP_TOWER else sha256_file(_resolve(p, recipe_path)) for p in c.image_teachers]
    it_cfg = {"teacher": recipe.teacher.model_dump(include={"arch", "options"}), "checkpoints": ckpts,
              "lit_epochs": c.lit_epochs, "lit_lr": c.lit_lr, "scale": c.scale, "heldout": heldout,
              "captions_per_image": c.captions_per_image}

    def image_teacher_stage(path: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        from pocketvit.clip.image_teacher import ProjectedTeacher, all_features, train_projection
        from pocketvit.models.stats import count_gflops, count_params

        teachers = _image_teachers(recipe, recipe_path, splits, dim, None)
        images = splits.train.images[torch.from_numpy(train_index)]
        labels = splits.train.labels[torch.from_numpy(train_index)]
        history = []
        for k, t in enumerate(teachers):
            if not isinstance(t, ProjectedTeacher):
                continue
            feats = all_features(t, (splits.normalize(images[i : i + 500]) for i in range(0, len(images), 500)), len(images))
            history.append(train_projection(t, feats, labels, cap_idx, torch.from_numpy(caption_emb), c.lit_epochs,
                                            256, c.lit_lr, c.scale, recipe.seed + k))
            save_file({n: p.detach().contiguous().cpu() for n, p in t.proj.state_dict().items()},
                      str(path / f"proj-{k}.safetensors"))
        test = zero_shot_scores(_ensemble_embeddings(teachers, splits, splits.test.images), class_emb,
                                splits.test.labels.numpy(), heldout)
        log(f"  image teacher (ensemble of {len(teachers)}): zero-shot test top-1 {test['test_top1']:.4f} (eager)")
        return {"arch": f"{len(teachers)} x {recipe.teacher.arch} + LiT projection",
                "params": sum(count_params(t) for t in teachers),
                "gflops": round(sum(count_gflops(t, splits.shape) for t in teachers), 6),
                "test_top1": test["test_top1"], "zero_shot": test, "lit_loss": history}

    teacher = runner.run("clip-image-teacher", it_cfg, [data, text], image_teacher_stage)
    if until == "clip-image-teacher":
        return {"recipe": recipe.name, "teacher": teacher.meta, "stages": runner.summary()}

    def reinforce_stage(path: Path) -> dict[str, Any]:
        from pocketvit.clip.reinforce import ReinforcedData, write_reinforced

        teachers = _image_teachers(recipe, recipe_path, splits, dim, teacher.path)
        write_reinforced(teachers, splits, train_index, aug, recipe.seed, c.augmentations, cap_idx, caption_emb,
                         path / "reinforced")
        rd = ReinforcedData(path / "reinforced")
        return {"images": len(rd), "augmentations": c.augmentations, "teachers": len(teachers),
                "captions_per_image": c.captions_per_image, "bytes": rd.size_bytes()}

    rcfg = {"augment": stable_dump(recipe.data.augment), "augmentations": c.augmentations}
    reinforced = runner.run("clip-reinforce", rcfg, [data, text, teacher], reinforce_stage)
    log(f"  reinforced dataset: {reinforced.meta['images']} images x {c.augmentations} augmentations, "
        f"{reinforced.meta['bytes'] / 1e6:.1f} MB")
    if until == "clip-reinforce":
        return {"recipe": recipe.name, "stages": runner.summary()}

    student = runner.run("clip-distill", {"student": recipe.student.model_dump(), "distill": recipe.distill.model_dump(
        include={"epochs", "batch_size", "lr", "weight_decay"}), "scale": c.scale, "kd_weight": c.kd_weight},
        [data, reinforced], _distill_stage_fn(recipe, splits, aug, reinforced, class_emb, heldout, dim))
    log(f"  student (eager) zero-shot test top-1 {student.meta['test_top1']:.4f}")
    if until == "clip-distill":
        return {"recipe": recipe.name, "student": student.meta, "stages": runner.summary()}
    text_student = None
    if c.text_student is not None:
        text_student = runner.run("text-student", {"teacher": text_cfg, **c.text_student.model_dump(),
                                                   "seed": recipe.seed}, [], _text_student_stage_fn(recipe))
    if until == "text-student":
        return {"recipe": recipe.name, "student": student.meta, "stages": runner.summary()}

    from pocketvit.clip.zeroshot import runtime_zero_shot_stage_fn
    from pocketvit.pipeline.stages.targets import export_stage, verify_config, verify_stage

    spec = ctx.spec

    def model_fn() -> torch.nn.Module:
        return _load_student(student, splits, dim)

    targets, exported = {}, {}
    for target in recipe.export.targets:
        exp = export_stage(ctx, target, student, model_fn)
        exported[target] = exp
        if exp.meta["runtime"] == "coreml":  # conversion + spec check only off macOS
            targets[target] = verify_stage(ctx, target, exp, model_fn, recipe.verify).meta
            continue
        targets[target] = runner.run(f"zeroshot-{target}", verify_config(recipe.verify), [exp, data, text],
                                     runtime_zero_shot_stage_fn(target, exp, model_fn, splits, spec, class_emb,
                                                                heldout, recipe.verify)).meta
    from pocketvit.pipeline.stages.clip_dropin import zero_shot_dropin_stages

    zero_shot_dropin_stages(ctx, [student], text, model_fn, class_emb, heldout, exported, targets)
    text_encoders = text_encoder_stages(recipe, runner, text_cfg, text_ckpt, text_student, exported, text, splits,
                                        spec, class_emb, names)
    keys = ("test_top1", "heldout_top1", "heldout_top1_among_heldout", "seen_top1")
    report = {
        "recipe": recipe.name, "version": __version__, "task": "zero-shot",
        "dataset": {"name": splits.name, "train": len(train_index), "val": len(splits.val),
                    "test": len(splits.test)},
        "teacher": {k: teacher.meta[k] for k in ("arch", "params", "gflops", "test_top1")},
        "student": {k: student.meta[k] for k in ("arch", "params", "gflops", "test_top1")},
        "baseline": None,
        "targets": targets,
        "zero_shot": {t: {k: m.get(k) for k in keys} for t, m in targets.items() if m.get("test_top1") is not None}
        | {"eager_student": student.meta["zero_shot"], "eager_teacher": teacher.meta["zero_shot"]},
        "clip": {"text_teacher": text.meta["teacher"], "embed_dim": dim, "heldout_classes": list(c.heldout_classes),
                 "image_teachers": len(c.image_teachers), "kd_weight": c.kd_weight, "scale": c.scale,
                 "reinforced": reinforced.meta, "student_epochs": recipe.distill.epochs},
        "text_student": text_student.meta if text_student else None,
        "text_encoder": {rt: st.meta for rt, st in text_encoders.items()} or None,
        "exits": {},
        "stages": runner.summary(),
    }
    from pocketvit.pipeline.stages.verdicts import enforce, judge_target
    from pocketvit.report import write_report, write_zero_shot_bundle

    for m in targets.values():  # an embedding: max |Δ| and cosine against eager (its argmax means nothing)
        judge_target(m, recipe.verify.tolerance, zero_shot=True)
    report["verify"], error = enforce(recipe.verify.on_mismatch, out_dir, targets, {}, len(splits.test))
    if error is not None:
        write_report(out_dir, report)
        raise error
    shipped = {t: e for t, e in exported.items() if t not in report["verify"]["dropped"]}
    write_zero_shot_bundle(out_dir, recipe, report, shipped, splits, spec, dim, student.path / "student.safetensors",
                           text.path / "text_embeddings.npy", text_encoders)
    return report


def _resolve(path: str, recipe_path: Path) -> Path:
    from pocketvit.recipe import resolve

    p = resolve(path, recipe_path.parent)
    if not p.is_file():
        raise RecipeError(f"clip: {path} not found (relative paths are from the recipe's folder)")
    return p


def _text_ckpt(recipe: Any, recipe_path: Path) -> Path | None:
    ckpt = recipe.clip.text_checkpoint
    return _resolve(ckpt, recipe_path) if ckpt else None


def _student_options(recipe: Any) -> dict[str, Any]:
    return {**recipe.student.options, "embed_norm": True}


def _load_student(stage: StageResult, splits: Splits, dim: int) -> torch.nn.Module:
    from pocketvit.models import build_model
    from pocketvit.models.weights import load_weights

    c, h, _ = splits.shape
    model = build_model(stage.meta["arch"], c, dim, h, stage.meta["options"])
    return load_weights(model, stage.path / "student.safetensors", "clip student")


def _distill_stage_fn(recipe: Any, splits: Splits, aug: AugmentConfig, reinforced: StageResult,
                      class_emb: np.ndarray, heldout: list[int], dim: int):
    def run(path: Path) -> dict[str, Any]:
        from pocketvit.clip.losses import clip_loss, similarity_kd
        from pocketvit.clip.reinforce import ReinforcedData
        from pocketvit.clip.zeroshot import eager_embeddings, zero_shot_scores
        from pocketvit.distill.trainer import TrainSettings, train
        from pocketvit.models import build_model
        from pocketvit.models.weights import model_meta, save_weights

        c, d = recipe.clip, recipe.distill
        ch, h, _ = splits.shape
        options = _student_options(recipe)
        model = build_model(recipe.student.arch, ch, dim, h, options)
        rd = ReinforcedData(reinforced.path / "reinforced")

        def loss_fn(s_img: torch.Tensor, target: tuple) -> torch.Tensor:
            txt, t_img, labels = target
            loss = clip_loss(s_img, txt, c.scale, positives=labels[:, None] == labels[None, :])
            return loss + c.kd_weight * similarity_kd(s_img, txt, t_img, txt, c.scale) if c.kd_weight else loss

        settings = TrainSettings(epochs=d.epochs, lr=d.lr, weight_decay=d.weight_decay,
                                 steps_per_epoch=-(-len(rd) // d.batch_size))
        train(model, lambda e: rd.batches(splits, aug, e, d.batch_size, recipe.seed), loss_fn, settings, path,
              f"clip student (CLIP{' + KD' if c.kd_weight else ''} loss, reinforced data)")
        save_weights(model, path / "student.safetensors")
        meta = model_meta(model, recipe.student.arch, options, splits)
        meta["zero_shot"] = zero_shot_scores(eager_embeddings(model, splits, splits.test.images), class_emb,
                                             splits.test.labels.numpy(), heldout)
        meta["test_top1"] = meta["zero_shot"]["test_top1"]
        return meta

    return run


def _text_student_stage_fn(recipe: Any):
    def run(path: Path) -> dict[str, Any]:
        from pocketvit.clip.text_distill import TextDistillConfig, distill_text
        from pocketvit.models.text import load_text_encoder

        cfg = TextDistillConfig(teacher=recipe.clip.text_teacher, seed=recipe.seed, **recipe.clip.text_student.model_dump())
        return distill_text(cfg, path, teacher=load_text_encoder(recipe.clip.text_teacher))

    return run
