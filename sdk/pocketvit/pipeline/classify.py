"""`pocketvit build` for a classification recipe, as its list of stages:

    data → teacher → teacher_cache → cache_bench → distill (+ baseline) → exits → export → verify → bundle + report

Each step below is one method of `ClassifyBuild`; each computes or reuses its stages through the context's runner.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pocketvit import __version__
from pocketvit.errors import PocketVitError
from pocketvit.models.weights import build_from_meta, load_weights, model_meta, save_weights, weights_path
from pocketvit.pipeline import plan
from pocketvit.pipeline.context import BuildContext
from pocketvit.pipeline.runner import StageResult
from pocketvit.progress import log
from pocketvit.recipe import Recipe, resolve
from pocketvit.recipe.schema import stable_dump
from pocketvit.runtime.io import atomic_path, sha256_file

STAGES = ("teacher", "teacher_cache", "cache_bench", "distill", "baseline", "exits", "export", "verify")


def run_build(
    recipe: Recipe, recipe_path: Path, out_dir: Path, fresh: bool = False, until: str | None = None
) -> dict[str, Any]:
    """Run (or resume) every stage of a recipe; returns the report dict (partial when `until` stops early)."""
    if recipe.clip is not None:  # CLIP-style build: zero-shot image student, its own stages
        from pocketvit.pipeline.clip import run_clip_build

        return run_clip_build(recipe, recipe_path, out_dir, fresh=fresh, until=until)
    if until is not None and until not in STAGES:
        raise PocketVitError(f"--until {until!r}: not a stage; use one of {', '.join(STAGES)}")
    return ClassifyBuild(recipe, recipe_path, out_dir, fresh).run(until)


class ClassifyBuild:
    def __init__(self, recipe: Recipe, recipe_path: Path, out_dir: Path, fresh: bool) -> None:
        from pocketvit.scale import ScaleConfig, setup

        self.dist = setup(ScaleConfig(**recipe.scale.model_dump()))  # Fabric's launcher starts the other ranks here
        self.ctx = BuildContext.open(recipe, recipe_path, out_dir, fresh)
        self.recipe = recipe
        self.teacher_targets: dict[str, Any] = {}
        s = self.ctx.splits
        log(f"data: {s.name} train {len(s.train)} / val {len(s.val)} / test {len(s.test)}")

    def run(self, until: str | None) -> dict[str, Any]:
        ctx = self.ctx
        teacher = self.teacher()
        if until == "teacher":  # out_dir/teacher.safetensors: this build's teacher (what `make teacher-weights` ships)
            if weights_path(teacher, "teacher").is_file():
                with atomic_path(ctx.out_dir / "teacher.safetensors") as tmp:
                    shutil.copyfile(weights_path(teacher, "teacher"), tmp)
            self.teacher_exports()
            return ctx.partial(teacher=teacher.meta | _public(teacher.meta),
                               teacher_weights=str(ctx.out_dir / "teacher.safetensors"),
                               teacher_targets=self.teacher_targets,
                               warnings=plan.training_warnings(teacher.meta, None, None))
        cache = self.teacher_cache(teacher)
        if until == "teacher_cache":
            return ctx.partial()
        from pocketvit.pipeline.stages.cache_bench import cache_bench_stage

        bench = cache_bench_stage(ctx, teacher, cache, self.load_teacher)  # distill.cache_speedup
        if until == "cache_bench":
            return ctx.partial(distill=bench.meta if bench else {})
        student, baseline = self.distill_and_baseline(cache)
        if until in ("distill", "baseline"):
            return ctx.partial(teacher=_public(teacher.meta), student=student.meta,
                               baseline=baseline.meta if baseline else None,
                               warnings=plan.training_warnings(teacher.meta, student.meta,
                                                               baseline.meta if baseline else None))
        exits = calibration = None
        if self.recipe.exits is not None:  # the exit-trained student is what every target exports
            exits, calibration = self.exits(student, cache)
            student = exits
        if until == "exits":
            return ctx.partial(student=student.meta)
        from pocketvit.scale import leave

        if not leave():  # training is over: rank 0 exports, verifies and reports alone
            return {"recipe": self.recipe.name, "rank": self.dist.rank, "stages": ctx.runner.summary(), "targets": {}}
        self.teacher_exports()
        exports = self.exports(student, cache)
        exit_exports = self.exit_exports(exits, exports) if exits else {}
        if until == "export":
            return ctx.partial(student=student.meta, exported=sorted([*exports, *(f"{t} exits" for t in exit_exports)]))
        targets = self.verify(student, exports)
        exits_report = self.exit_programs(exit_exports, calibration, exports, exits) if exits else {}
        report = self.report(teacher, student, baseline, cache, bench, targets, exits_report)
        if baseline_targets := self.baseline_exports(baseline):
            report["baseline_targets"] = baseline_targets
        shipped, shipped_exits = self.check(report, exports, exit_exports)
        if until == "verify":
            return report
        self.write_bundle(report, student, shipped, shipped_exits, exits, calibration)
        return report

    # ------------------------------------------------------------------ teacher
    def teacher(self) -> StageResult:
        from pocketvit.distill import pretrained as pre

        ctx, recipe = self.ctx, self.recipe
        self.ext = pre.prepare(recipe, ctx.recipe_path, ctx.splits)  # a pretrained teacher, or None
        if self.ext is not None:
            teacher = ctx.run("teacher", self.ext.config, [ctx.labeled_data], self.ext.stage_fn())
            pre.attach(teacher.path, ctx.splits)
            if self.ext.finetuned:
                self.ext.weights = weights_path(teacher, "teacher")
        else:
            cfg = stable_dump(recipe.teacher)
            ckpt = None
            self.teacher_epochs = plan.teacher_plan(recipe, len(ctx.splits.labeled_train), True).epochs
            cfg["train"] = pre.training_config(cfg["train"], self.teacher_epochs)
            if recipe.teacher.checkpoint:
                ckpt = resolve(recipe.teacher.checkpoint, ctx.recipe_path.parent)
                cfg |= {"checkpoint_sha256": sha256_file(ckpt)}
                if not recipe.teacher.finetune:
                    cfg.pop("train")
            teacher = ctx.run("teacher", cfg, [ctx.labeled_data], self._teacher_stage(ckpt))
        self.teacher_stage = teacher
        log(f"{pre.describe(teacher.meta, 'teacher')}, {teacher.meta['gflops'] * 1e3:.1f} MFLOPs")
        if teacher.meta.get("val_top1") is not None:
            log(f"  teacher val top-1 {teacher.meta['val_top1']:.4f}")
        warn(plan.training_warnings(teacher.meta, None, None))
        return teacher

    def _teacher_stage(self, ckpt: Path | None):
        recipe, splits = self.recipe, self.ctx.splits

        def run(path: Path) -> dict[str, Any]:
            from pocketvit.distill.supervised import evaluate, train_on_labels

            model = build_from_meta(recipe.teacher.model_dump(), splits)
            if ckpt is not None:
                load_weights(model, ckpt, "teacher.checkpoint")
            summary: dict[str, Any] = {}
            if ckpt is None or recipe.teacher.finetune:
                from pocketvit.distill.trainer import resolve_precision

                t = recipe.teacher.train
                precision = resolve_precision(t.precision or "fp32", self.dist.device)
                train_on_labels(model, splits, self.ctx.aug, recipe.seed, self.teacher_epochs, t.batch_size, t.lr,
                                t.weight_decay, t.label_smoothing, path, "teacher", precision=precision,
                                patience=t.patience, summary=summary)
            save_weights(model, weights_path(path, "teacher"))
            meta = model_meta(model, recipe.teacher.arch, recipe.teacher.options, splits)
            if summary:
                meta["train"] = summary
            meta["val_top1"] = evaluate(model, splits, splits.val, "teacher val")
            meta["test_top1"] = evaluate(model, splits, splits.test, "teacher test")
            return meta

        return run

    def load_teacher(self) -> torch.nn.Module:
        if self.ext is not None:
            return self.ext.load().model
        return self.ctx.model_fn(self.teacher_stage, "teacher")()

    # ------------------------------------------------------------------ teacher cache (TinyViT sparse logits)
    def teacher_cache(self, teacher: StageResult) -> StageResult:
        ctx, recipe = self.ctx, self.recipe

        def run(path: Path) -> dict[str, Any]:
            from pocketvit.distill.cache import TeacherCache, write_cache
            from pocketvit.distill.trainer import resolve_precision

            model = self.load_teacher()
            c = recipe.teacher_cache
            model.to(self.dist.device)
            precision = resolve_precision(c.precision, next(model.parameters()).device)
            write_cache(model, ctx.splits, ctx.aug, recipe.seed, c.epochs, c.topk, c.batch_size, path / "cache",
                        precision=precision)
            reader = TeacherCache(path / "cache", len(ctx.splits.train))
            return {"epochs": c.epochs, "topk": c.topk, "precision": precision, "bytes": reader.size_bytes(),
                    "shard_bytes": reader.shard_bytes()}

        cfg = {"cache": recipe.teacher_cache.model_dump(), "augment": stable_dump(recipe.data.augment)}
        return ctx.run("teacher_cache", cfg, [ctx.data, teacher], run)

    # ------------------------------------------------------------------ distill (+ the labels-only baseline beside it)
    def distill_and_baseline(self, cache: StageResult) -> tuple[StageResult, StageResult | None]:
        from pocketvit.distill import pretrained as pre
        from pocketvit.pipeline.stages import baseline as base

        ctx, recipe, d = self.ctx, self.recipe, self.recipe.distill
        distill_cfg = distill_config(recipe, ctx.splits)
        train_cfg = {"student": recipe.student.model_dump(), "distill": distill_cfg}
        base_cfg = base.baseline_config(recipe, distill_cfg, ctx.splits)
        side = None
        if d.baseline and ctx.splits.labeled and not ctx.runner.finished("distill", train_cfg, [ctx.data, cache]) \
                and not ctx.runner.finished("baseline", base_cfg, [ctx.labeled_data]):
            why_not = base.side_process_reason(recipe, self.dist.device, self.dist.world_size)
            if why_not is None:
                main_threads, side_threads = base.split_threads(torch.get_num_threads())
                side = base.SideStage.start(recipe, ctx.runner, ctx.labeled_data, base_cfg, side_threads)
            else:
                log(f"[dim]baseline trains after distill ({why_not})[/dim]")
        threads = torch.get_num_threads()
        try:
            if side is not None:
                torch.set_num_threads(main_threads)
            student = ctx.run("distill", train_cfg, [ctx.data, cache], self._distill_stage(cache))
            side_ok = side is not None and side.finish()
        finally:
            torch.set_num_threads(threads)
            if side is not None:
                side.stop()  # only still running when distill failed or was interrupted
        log(f"{pre.describe(student.meta, 'student (eager)')}, {student.meta['gflops'] * 1e3:.1f} MFLOPs")
        baseline = None
        if d.baseline and not ctx.splits.labeled:
            pre.log_skipped_baseline()
        elif d.baseline:
            baseline = ctx.run("baseline", base_cfg, [ctx.labeled_data],
                               base.baseline_stage_fn(recipe, ctx.splits, ctx.aug),
                               computed_elsewhere="trained beside distill" if side_ok else None)
            log(f"  baseline (labels only) test top-1 {baseline.meta['test_top1']:.4f}")
        warn(plan.training_warnings(None, student.meta, baseline.meta if baseline else None))
        return student, baseline

    def _distill_stage(self, cache: StageResult):
        ctx, recipe, d = self.ctx, self.recipe, self.recipe.distill

        def run(path: Path) -> dict[str, Any]:
            from pocketvit.distill import pretrained as pre
            from pocketvit.distill.cache import TeacherCache
            from pocketvit.distill.losses import sparse_kd_loss
            from pocketvit.distill.trainer import TrainSettings, Validation, train

            splits = ctx.splits
            model = build_from_meta(recipe.student.model_dump(), splits)
            reader = TeacherCache(cache.path / "cache", len(splits.train))
            p = plan.distill_plan(recipe, len(splits.train))
            settings = TrainSettings(epochs=p.epochs, lr=d.lr, weight_decay=d.weight_decay,
                                     steps_per_epoch=p.steps_per_epoch, fast=d.fast_train)
            validation = None
            if d.patience is not None and len(splits.val):
                validation = Validation(lambda m: pre.val_score(m, splits, "distill student"), patience=d.patience)
            summary: dict[str, Any] = {}
            train(model, lambda e, shard=None: reader.batches(splits, ctx.aug, e, d.batch_size, recipe.seed, shard=shard),
                  sparse_kd_loss(d.temperature), settings, path, "distill student", validation=validation,
                  summary=summary)
            save_weights(model, weights_path(path, "student"))
            meta = model_meta(model, recipe.student.arch, recipe.student.options, splits)
            return meta | pre.held_out_scores(model, splits, "student") | {"train": summary}

        return run

    # ------------------------------------------------------------------ early exits (LGViT)
    def exits(self, student: StageResult, cache: StageResult) -> tuple[StageResult, StageResult]:
        from pocketvit.pipeline.stages.exits import calibrate_stage_fn, exits_stage_fn

        ctx, e = self.ctx, self.recipe.exits
        cfg = e.model_dump(exclude={"budget", "margin", "confidence", "targets"})
        exits = ctx.run("exits", cfg, [student, cache], exits_stage_fn(ctx, student, cache))
        calibration = ctx.run("exits-calibrate", {"budget": e.budget, "margin": e.margin, "confidence": e.confidence},
                              [exits], calibrate_stage_fn(ctx, exits))
        return exits, calibration

    # ------------------------------------------------------------------ export, then verify per target on its own runtime
    def exports(self, student: StageResult, cache: StageResult) -> dict[str, tuple[StageResult, Any]]:
        """Every file the bundle may hold: {target: (its export stage, the verify settings it is checked with)}
        (int8 targets get quantize.tolerance); the drop-in files after the export targets."""
        from pocketvit.pipeline.stages.int8 import int8_exports
        from pocketvit.pipeline.stages.targets import dropin_exports, export_stage

        ctx = self.ctx
        model_fn = ctx.model_fn(student)
        int8 = int8_exports(ctx, student, model_fn, cache=cache)
        out = {t: int8[t] if t in int8 else (export_stage(ctx, t, student, model_fn), self.recipe.verify)
               for t in self.recipe.export.targets}
        # drop-in files: the image contract inside the graph, beside the float files
        out |= {t: (exp, self.recipe.verify) for t, exp in dropin_exports(ctx, [student], model_fn).items()}
        return out

    def verify(self, student: StageResult, exports: dict[str, tuple[StageResult, Any]]) -> dict[str, Any]:
        """report.json's targets: each file on its own runtime over the whole test split."""
        from pocketvit.pipeline.stages.targets import verify_stage

        model_fn = self.ctx.model_fn(student)
        targets: dict[str, Any] = {}
        for t, (exp, vcfg) in exports.items():
            targets[t] = verify_stage(self.ctx, t, exp, model_fn, vcfg).meta
            # plan and QAT notes join an int8 export's info after its stage: a cached verify lacks them
            targets[t]["export_info"] = exp.meta["info"]
        return targets

    def teacher_exports(self) -> None:
        """export.teacher: the teacher (its own preprocessing inside, the student's input) exported to the first
        float target and measured on its runtime over the test split, like the student (report `teacher_targets`)."""
        if self.recipe.export.teacher and not self.teacher_targets:
            self.teacher_targets = self.measure_on_runtime("teacher", self.teacher_stage, self.load_teacher)

    def baseline_exports(self, baseline: StageResult | None) -> dict[str, Any]:
        """export.baseline: the labels-only student exported to the first float target and measured on its runtime
        over the test split (report `baseline_targets`), so both students are compared on the runtime they ship on."""
        if not self.recipe.export.baseline:
            return {}
        if baseline is None:
            raise PocketVitError("export.baseline: there is no labels-only student to export; set distill.baseline: "
                                 "true (it needs labeled data) or drop export.baseline")
        return self.measure_on_runtime("baseline", baseline, self.ctx.model_fn(baseline, "student"))

    def measure_on_runtime(self, who: str, stage: StageResult, model_fn: Callable[[], torch.nn.Module]
                           ) -> dict[str, Any]:
        """A model besides the student (`who`: teacher, baseline) exported to the first float target
        (export-<who>-<target>) and verified there over the test split (verify-<who>-<target>)."""
        from pocketvit.pipeline.stages.targets import export_stage_fn, verify_stage_fn

        ctx, recipe = self.ctx, self.recipe
        floats = [t for t in recipe.export.targets if "-" not in t]
        if not floats:
            raise PocketVitError(f"export.{who}: export.targets has no float target to measure the {who} on; "
                                 "add executorch, litert or onnx")
        target = floats[0]
        exp = ctx.run(f"export-{who}-{target}", {"target": target}, [stage],
                      export_stage_fn(target, model_fn, ctx.spec, f"{ctx.name}-{who}"))
        ver = ctx.run(f"verify-{who}-{target}", recipe.verify.model_dump(), [exp, ctx.labeled_data],
                      verify_stage_fn(f"{who} {target}", exp, model_fn, ctx.splits, ctx.spec, recipe.verify))
        return {target: ver.meta}

    def exit_exports(self, exits: StageResult, exports: dict[str, tuple[StageResult, Any]]) -> dict[str, StageResult]:
        """The segmented exit program per target (export-exits-<target>)."""
        from pocketvit.pipeline.stages.exits import exit_program_stage_fn

        ctx, recipe = self.ctx, self.recipe
        out: dict[str, StageResult] = {}
        for target in recipe.exits.targets or [t for t in recipe.export.targets if "-" not in t]:
            if target not in exports:
                raise PocketVitError(f"exits.targets lists {target!r}, which export.targets lacks; add it there")
            out[target] = ctx.run(f"export-exits-{target}", {"target": target}, [exits],
                                  exit_program_stage_fn(ctx, target, exits))
        return out

    def exit_programs(self, exit_exports: dict[str, StageResult], calibration: StageResult,
                      exports: dict[str, tuple[StageResult, Any]], exits: StageResult) -> dict[str, Any]:
        """report.json's exits: each exit program run segment by segment on its runtime (exits-<target>)."""
        from pocketvit.pipeline.stages.exits import measure_stage_fn
        from pocketvit.pipeline.stages.targets import verify_config

        ctx = self.ctx
        report: dict[str, Any] = {}
        for target, ee in exit_exports.items():
            exported = exports[target][0]
            m = ctx.run(f"exits-{target}", verify_config(self.recipe.verify), [ee, exported, calibration, ctx.data],
                        measure_stage_fn(ctx, target, exported, ee, calibration, exits))
            report[target] = m.meta
        return report

    def check(self, report: dict[str, Any], exports: dict[str, tuple[StageResult, Any]],
              exit_exports: dict[str, StageResult]) -> tuple[dict[str, StageResult], dict[str, StageResult]]:
        """Each target's and exit program's verdict, and `verify.on_mismatch` applied: the files that ship. Under
        `fail` a mismatch stops the build here (exit 6) with the report written and no bundle."""
        from pocketvit.pipeline.stages.verdicts import enforce, judge_exit_program, judge_target

        for t, e in report["targets"].items():
            judge_target(e, exports[t][1].tolerance)
        for e in report["exits"].values():
            judge_exit_program(e, self.recipe.verify.tolerance)
        summary, error = enforce(self.recipe.verify.on_mismatch, self.ctx.out_dir, report["targets"], report["exits"],
                                 len(self.ctx.splits.test))
        report["verify"] = summary
        if error is not None:
            from pocketvit.report import write_report

            write_report(self.ctx.out_dir, report)
            raise error
        dropped = set(summary["dropped"])
        shipped = {t: exp for t, (exp, _) in exports.items() if t not in dropped}
        return shipped, {t: e for t, e in exit_exports.items() if t in shipped and f"{t} exits" not in dropped}

    # ------------------------------------------------------------------ report + bundle
    def report(self, teacher: StageResult, student: StageResult, baseline: StageResult | None, cache: StageResult,
               bench: StageResult | None, targets: dict[str, Any], exits_report: dict[str, Any]) -> dict[str, Any]:
        s = self.ctx.splits
        return {
            "recipe": self.recipe.name,
            "version": __version__,
            "dataset": {"name": s.name, "train": len(s.train), "val": len(s.val), "test": len(s.test),
                        "labeled": s.labeled}
            | ({"train_labeled": len(s.labeled_train), "unlabeled": s.unlabeled} if s.unlabeled else {}),
            "teacher": _public(teacher.meta),
            "student": _public(student.meta),
            "baseline": {"test_top1": baseline.meta["test_top1"]} if baseline else None,
            "distill": {"cache_bytes": cache.meta["bytes"], "cache_epochs": cache.meta["epochs"],
                        "topk": cache.meta["topk"],
                        "student_epochs": (student.meta.get("train") or {}).get("epochs", self.recipe.distill.epochs)}
            | (bench.meta if bench else {}),
            "targets": targets,
            "exits": exits_report,
            "training": {k: m.get("train") for k, m in (("teacher", teacher.meta), ("distill", student.meta),
                                                        ("baseline", baseline.meta if baseline else {}))
                         if m.get("train")},
            "warnings": plan.training_warnings(teacher.meta, student.meta, baseline.meta if baseline else None),
            "stages": self.ctx.runner.summary(),
        } | ({"teacher_targets": self.teacher_targets} if self.teacher_targets else {})

    def write_bundle(self, report: dict[str, Any], student: StageResult, exported: dict[str, StageResult],
                     exit_exports: dict[str, StageResult], exits: StageResult | None,
                     calibration: StageResult | None) -> None:
        from pocketvit.models import source_block
        from pocketvit.report import write_bundle_and_report

        ctx, st = self.ctx, self.recipe.student
        c, h, _ = ctx.splits.shape
        source = source_block(st.arch, st.options, c, len(ctx.splits.labels), h)
        write_bundle_and_report(ctx.out_dir, self.recipe, report, exported, ctx.splits, ctx.spec, source,
                                weights_path(student, "student"))
        if exit_exports:
            from pocketvit.exits.bundle import add_exit_programs

            add_exit_programs(ctx.out_dir / "bundle", {t: (e.path, e.meta) for t, e in exit_exports.items()},
                              calibration.meta["thresholds"], exits.path / "exits.safetensors")


def distill_config(recipe: Recipe, splits: Any) -> dict[str, Any]:
    """What trains the student (the distill stage's hash config): the epochs that run for the data's size in place
    of steps / min_steps; the baseline shares it minus the KD temperature."""
    from pocketvit.distill.pretrained import training_config

    not_training = {"baseline", "baseline_label_smoothing", "baseline_in_parallel", "cache_bench_steps",
                    "cache_bench_threads"}
    cfg = {k: v for k, v in stable_dump(recipe.distill).items() if k not in not_training}
    return training_config(cfg, plan.distill_plan(recipe, len(splits.train)).epochs)


def warn(lines: list[str]) -> None:
    for line in lines:
        log(f"[yellow]warning: {line}[/yellow]")


def _public(meta: dict[str, Any]) -> dict[str, Any]:
    keys = ("arch", "params", "gflops", "val_top1", "test_top1", "test_teacher_agreement", "pretrained", "finetuned",
            "init", "inputs")
    return {k: meta[k] for k in keys if k in meta}


def default_out_dir(recipe: Recipe) -> Path:
    return Path(os.environ.get("POCKETVIT_RUNS", "runs")) / recipe.name
