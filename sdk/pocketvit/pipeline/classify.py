"""`pocketvit build`: data → teacher → teacher cache → distill (+ baseline) → export → verify → bundle + report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from pocketvit import __version__
from pocketvit.data import input_spec, load_dataset
from pocketvit.data.augment import AugmentConfig
from pocketvit.data.datasets import Splits
from pocketvit.errors import PocketVitError
from pocketvit.models.weights import build_from_meta, load_weights, model_meta, save_weights, weights_path
from pocketvit.pipeline.runner import StageResult, StageRunner
from pocketvit.progress import log
from pocketvit.recipe import Recipe, resolve
from pocketvit.recipe.schema import stable_dump
from pocketvit.runtime.io import hash_config, sha256_file

STAGES = ("teacher", "teacher_cache", "cache_bench", "distill", "baseline", "exits", "export", "verify")


def run_build(
    recipe: Recipe, recipe_path: Path, out_dir: Path, fresh: bool = False, until: str | None = None
) -> dict[str, Any]:
    """Run (or resume) every stage of a recipe; returns the report dict (partial when `until` stops early)."""
    if recipe.clip is not None:  # CLIP-style build: zero-shot image student, its own stages (clip/build.py)
        from pocketvit.pipeline.clip import run_clip_build

        return run_clip_build(recipe, recipe_path, out_dir, fresh=fresh, until=until)
    if until is not None and until not in STAGES:
        raise PocketVitError(f"--until {until!r}: not a stage; use one of {', '.join(STAGES)}")
    from pocketvit.distill.supervised import evaluate, train_on_labels
    from pocketvit.scale import ScaleConfig, leave, setup

    dist = setup(ScaleConfig(**recipe.scale.model_dump()))  # Fabric's launcher starts the other local ranks here
    torch.manual_seed(recipe.seed)
    runner = StageRunner(out_dir, fresh=fresh, seed=recipe.seed)
    aug = AugmentConfig(**recipe.data.augment.model_dump())
    splits = load_dataset(recipe.data, recipe.seed)
    log(f"data: {splits.name} train {len(splits.train)} / val {len(splits.val)} / test {len(splits.test)}")
    from pocketvit.distill import pretrained as pre

    ext = pre.prepare(recipe, recipe_path, splits)  # a teacher used as it comes (models/teachers.py), or None
    data = StageResult("data", hash_config({"data": stable_dump(recipe.data), "seed": recipe.seed,
                                            "n": [len(splits.train), len(splits.test)]}
                                           | ({"files": splits.fingerprint} if splits.fingerprint else {})),
                       out_dir, {}, 0.0, True)

    # teacher: trained here, or loaded from a safetensors checkpoint
    tcfg = stable_dump(recipe.teacher)
    if recipe.teacher.checkpoint:
        ckpt = resolve(recipe.teacher.checkpoint, recipe_path.parent)
        tcfg |= {"checkpoint_sha256": sha256_file(ckpt)}
        if not recipe.teacher.finetune:
            tcfg.pop("train")

    def teacher_stage(path: Path) -> dict[str, Any]:
        model = build_from_meta(recipe.teacher.model_dump(), splits)
        if recipe.teacher.checkpoint:
            load_weights(model, ckpt, "teacher.checkpoint")
        if not recipe.teacher.checkpoint or recipe.teacher.finetune:
            t = recipe.teacher.train
            train_on_labels(model, splits, aug, recipe.seed, t.epochs, t.batch_size, t.lr, t.weight_decay,
                            t.label_smoothing, path, "teacher")
        save_weights(model, weights_path(path, "teacher"))
        meta = model_meta(model, recipe.teacher.arch, recipe.teacher.options, splits)
        meta["val_top1"] = evaluate(model, splits, splits.val, "teacher val")
        meta["test_top1"] = evaluate(model, splits, splits.test, "teacher test")
        return meta

    if ext is not None:
        teacher = runner.run("teacher", ext.config, [data], ext.stage_fn())
        pre.attach(teacher.path, splits)
    else:
        teacher = runner.run("teacher", tcfg, [data], teacher_stage)
    log(f"{pre.describe(teacher.meta, 'teacher')}, {teacher.meta['gflops'] * 1e3:.1f} MFLOPs")
    if until == "teacher":  # out_dir/teacher.safetensors: this build's teacher (what `make teacher-weights` ships)
        import shutil

        from pocketvit.runtime.io import atomic_path

        with atomic_path(out_dir / "teacher.safetensors") as tmp:
            shutil.copyfile(weights_path(teacher, "teacher"), tmp)
        return {"recipe": recipe.name, "teacher": teacher.meta, "teacher_weights": str(out_dir / "teacher.safetensors"),
                "stages": runner.summary()}

    def load_teacher() -> torch.nn.Module:
        if ext is not None:
            return ext.load().model
        return load_weights(build_from_meta(teacher.meta, splits), weights_path(teacher, "teacher"), "teacher")

    # teacher cache (TinyViT): sparse top-k probabilities per sample per augmented epoch
    def cache_stage(path: Path) -> dict[str, Any]:
        from pocketvit.distill.cache import TeacherCache, write_cache

        model = load_teacher()
        from pocketvit.distill.trainer import resolve_precision

        c = recipe.teacher_cache
        model.to(dist.device)
        precision = resolve_precision(c.precision, next(model.parameters()).device)
        write_cache(model, splits, aug, recipe.seed, c.epochs, c.topk, c.batch_size, path / "cache", precision=precision)
        reader = TeacherCache(path / "cache", len(splits.train))
        return {"epochs": c.epochs, "topk": c.topk, "precision": precision, "bytes": reader.size_bytes(),
                "shard_bytes": reader.shard_bytes()}

    cache_cfg = {"cache": recipe.teacher_cache.model_dump(), "augment": stable_dump(recipe.data.augment)}
    cache = runner.run("teacher_cache", cache_cfg, [data, teacher], cache_stage)
    if until == "teacher_cache":
        return {"recipe": recipe.name, "stages": runner.summary()}
    from pocketvit.pipeline.stages.cache_bench import cache_bench_stage

    bench = cache_bench_stage(recipe, runner, splits, aug, data, teacher, cache, load_teacher)  # distill.cache_speedup
    if until == "cache_bench":
        return {"recipe": recipe.name, "distill": bench.meta if bench else {}, "stages": runner.summary()}

    # distill: the student learns only from the cache; the labels-only baseline may train beside it
    scfg = recipe.student.model_dump()
    d = recipe.distill
    from pocketvit.pipeline.stages import baseline as base

    distill_cfg = distill_config(recipe)
    train_cfg = {"student": scfg, "distill": distill_cfg}
    base_cfg = base.baseline_config(recipe, distill_cfg)
    side = None
    if d.baseline and splits.labeled and not runner.finished("distill", train_cfg, [data, cache]) \
            and not runner.finished("baseline", base_cfg, [data]):
        why_not = base.side_process_reason(recipe, dist.device, dist.world_size)
        if why_not is None:
            main_threads, side_threads = base.split_threads(torch.get_num_threads())
            side = base.SideStage.start(recipe, runner, data, base_cfg, side_threads)
        else:
            log(f"[dim]baseline trains after distill ({why_not})[/dim]")

    def distill_stage(path: Path) -> dict[str, Any]:
        from pocketvit.distill.cache import TeacherCache
        from pocketvit.distill.losses import sparse_kd_loss
        from pocketvit.distill.trainer import TrainSettings, train

        model = build_from_meta(scfg, splits)
        reader = TeacherCache(cache.path / "cache", len(splits.train))
        steps = -(-len(splits.train) // d.batch_size)
        settings = TrainSettings(epochs=d.epochs, lr=d.lr, weight_decay=d.weight_decay, steps_per_epoch=steps,
                                 fast=d.fast_train)
        train(model, lambda e, shard=None: reader.batches(splits, aug, e, d.batch_size, recipe.seed, shard=shard),
              sparse_kd_loss(d.temperature), settings, path, "distill student")
        save_weights(model, weights_path(path, "student"))
        meta = model_meta(model, recipe.student.arch, recipe.student.options, splits)
        return meta | pre.held_out_scores(model, splits, "student")

    threads = torch.get_num_threads()
    try:
        if side is not None:
            torch.set_num_threads(main_threads)
        student = runner.run("distill", train_cfg, [data, cache], distill_stage)
        side_ok = side is not None and side.finish()
    finally:
        torch.set_num_threads(threads)
        if side is not None:
            side.stop()  # only still running when distill failed or was interrupted
    log(f"{pre.describe(student.meta, 'student (eager)')}, {student.meta['gflops'] * 1e3:.1f} MFLOPs")

    baseline = None
    if d.baseline and not splits.labeled:
        pre.log_skipped_baseline()
    elif d.baseline:
        baseline = runner.run("baseline", base_cfg, [data], base.baseline_stage_fn(recipe, splits, aug),
                              computed_elsewhere="trained beside distill" if side_ok else None)
        log(f"  baseline (labels only) test top-1 {baseline.meta['test_top1']:.4f}")
    if until in ("distill", "baseline"):
        return {"recipe": recipe.name, "student": student.meta, "stages": runner.summary()}

    # early exits (LGViT, exits/stage.py): the exit-trained student is what every target exports
    exits_stage = calibration = None
    if recipe.exits is not None:
        from pocketvit.pipeline.stages.exits import calibrate_stage_fn, exits_stage_fn

        ex_cfg = recipe.exits.model_dump(exclude={"budget", "margin", "confidence", "targets"})
        exits_stage = runner.run("exits", ex_cfg, [student, cache], exits_stage_fn(recipe, splits, aug, student, cache, _student))
        calibration = runner.run("exits-calibrate", {"budget": recipe.exits.budget, "margin": recipe.exits.margin,
                                                     "confidence": recipe.exits.confidence},
                                 [exits_stage], calibrate_stage_fn(recipe, splits, exits_stage))
        student = exits_stage
    if until == "exits":
        return {"recipe": recipe.name, "student": student.meta, "stages": runner.summary()}
    if not leave():  # training is over: rank 0 exports, verifies and reports alone
        return {"recipe": recipe.name, "rank": dist.rank, "stages": runner.summary(), "targets": {}}

    # export + verify per target, measured on each target's own runtime
    from pocketvit.pipeline.stages.targets import export_stage_fn, verify_stage_fn

    targets: dict[str, Any] = {}
    exported: dict[str, StageResult] = {}
    spec = input_spec(splits)
    from pocketvit.pipeline.stages.int8 import int8_exports

    int8 = int8_exports(recipe, runner, student, data, splits, spec, lambda: _student(student, splits), cache=cache)
    for target in recipe.export.targets:
        exp, vcfg = int8[target] if target in int8 else (None, recipe.verify)
        if exp is None:
            no_rw = tuple(recipe.export.no_rewrite)
            exp = runner.run(f"export-{target}", {"target": target} | ({"no_rewrite": list(no_rw)} if no_rw else {}),
                             [student], export_stage_fn(target, lambda: _student(student, splits), spec, recipe.name,
                                                        no_rw))
        exported[target] = exp
        ver = runner.run(f"verify-{target}", vcfg.model_dump(), [exp, data],
                         verify_stage_fn(target, exp, lambda: _student(student, splits), splits, spec, vcfg))
        targets[target] = ver.meta
        if target in int8:  # plan and QAT notes join the export info after its stage: a cached verify lacks them
            targets[target]["export_info"] = exp.meta["info"]
    # drop-in files (issue 11): the image contract inside the graph, beside the float files
    from pocketvit.pipeline.stages.targets import dropin_stages

    dropin_stages(recipe, runner, [student], data, splits, spec, lambda: _student(student, splits), exported, targets)
    # the segmented exit program per target, run segment by segment on its runtime (exits/stage.py)
    exits_report: dict[str, Any] = {}
    exit_exports: dict[str, StageResult] = {}
    if exits_stage is not None:
        from pocketvit.models import source_block as _source_block
        from pocketvit.pipeline.stages.exits import export_stage_fn as exit_export_fn
        from pocketvit.pipeline.stages.exits import measure_stage_fn

        c, h, _ = splits.shape
        src = _source_block(recipe.student.arch, recipe.student.options, c, len(splits.labels), h)
        for target in recipe.exits.targets or [t for t in recipe.export.targets if "-" not in t]:
            if target not in exported:
                raise PocketVitError(f"exits.targets lists {target!r}, which export.targets lacks; add it there")
            ee = runner.run(f"export-exits-{target}", {"target": target}, [exits_stage],
                            exit_export_fn(target, exits_stage, splits, spec, recipe.name))
            exit_exports[target] = ee
            m = runner.run(f"exits-{target}", recipe.verify.model_dump(), [ee, exported[target], calibration, data],
                           measure_stage_fn(target, exported[target], ee, calibration, exits_stage, splits, spec,
                                            recipe.verify, recipe.name, src))
            exits_report[target] = m.meta
    from pocketvit.report import write_bundle_and_report

    report = {
        "recipe": recipe.name,
        "version": __version__,
        "dataset": {"name": splits.name, "train": len(splits.train), "val": len(splits.val), "test": len(splits.test),
                    "labeled": splits.labeled},
        "teacher": _public(teacher.meta),
        "student": _public(student.meta),
        "baseline": {"test_top1": baseline.meta["test_top1"]} if baseline else None,
        "distill": {"cache_bytes": cache.meta["bytes"], "cache_epochs": cache.meta["epochs"],
                    "topk": cache.meta["topk"], "student_epochs": d.epochs} | (bench.meta if bench else {}),
        "targets": targets,
        "exits": exits_report,
        "stages": runner.summary(),
    }
    from pocketvit.models import source_block

    c, h, _ = splits.shape
    source = source_block(recipe.student.arch, recipe.student.options, c, len(splits.labels), h)
    write_bundle_and_report(out_dir, recipe, report, exported, splits, spec, source, weights_path(student, "student"))
    if exit_exports:
        from pocketvit.exits.bundle import add_exit_programs

        add_exit_programs(out_dir / "bundle", {t: (e.path, e.meta) for t, e in exit_exports.items()},
                          calibration.meta["thresholds"], exits_stage.path / "exits.safetensors")
    return report


def distill_config(recipe: Recipe) -> dict[str, Any]:
    """What trains the student (the distill stage's hash config); the baseline shares it minus the KD temperature."""
    not_training = {"baseline", "baseline_label_smoothing", "baseline_in_parallel", "cache_bench_steps",
                    "cache_bench_threads"}
    return {k: v for k, v in stable_dump(recipe.distill).items() if k not in not_training}


def _student(stage: StageResult, splits: Splits) -> torch.nn.Module:
    return load_weights(build_from_meta(stage.meta, splits), weights_path(stage.path, "student"), "student")


def _public(meta: dict[str, Any]) -> dict[str, Any]:
    keys = ("arch", "params", "gflops", "test_top1", "test_teacher_agreement", "pretrained", "inputs")
    return {k: meta[k] for k in keys if k in meta}


def default_out_dir(recipe: Recipe) -> Path:
    return Path(os.environ.get("POCKETVIT_RUNS", "runs")) / recipe.name
