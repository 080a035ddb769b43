"""The build's early-exit stages (pipeline/classify.py wires them after distill):

    exits            LGViT stages 1 + 2 on the distilled student (teacher cache reused); writes the exit
                     model, the fine-tuned student, and every exit's logits on the val and test splits
    exits-calibrate  one threshold per exit on the validation split (accuracy budget), eager test figures
    export-exits-T   the segmented program for target T (exits/export.py)
    exits-T          the program run segment by segment on T's runtime over the whole test split
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pocketvit.pipeline.context import BuildContext
from pocketvit.pipeline.runner import StageResult
from pocketvit.progress import log


def build_exit_model(student: torch.nn.Module, cfg: Any, num_classes: int):
    from pocketvit.exits.model import EarlyExitModel

    return EarlyExitModel(student, list(cfg.after_blocks), cfg.heads if cfg.heads == "auto" else list(cfg.heads),
                          num_classes)


@torch.no_grad()
def segment_costs(model, shape: tuple[int, ...]) -> dict[str, Any]:
    """FLOPs of each segment and the cumulative cost of leaving at each exit, as a fraction of the
    plain student's FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    from pocketvit.exits.model import segment_examples

    model.eval()
    example = torch.zeros(1, *shape)
    flops = []
    for seg, args in zip(model.segments(), segment_examples(model, example)):
        with FlopCounterMode(display=False) as counter:
            seg(*args)
        flops.append(int(counter.get_total_flops()))
    with FlopCounterMode(display=False) as counter:
        model.student()(example)
    full = int(counter.get_total_flops())
    cumulative = np.cumsum(flops)
    return {"segment_flops": flops, "full_flops": full,
            "exit_cost": [round(float(c) / full, 6) for c in cumulative]}


def exits_stage_fn(ctx: BuildContext, student_stage: StageResult, cache_stage: StageResult) -> Callable[[Path], dict]:
    recipe, splits, aug = ctx.recipe, ctx.splits, ctx.aug
    cfg = recipe.exits

    def run(path: Path) -> dict[str, Any]:
        from pocketvit.data.datasets import plain_batches
        from pocketvit.distill.cache import TeacherCache
        from pocketvit.exits.model import exit_specs
        from pocketvit.exits.train import default_weights, exit_logits, train_exits
        from pocketvit.models.weights import model_meta, save_weights

        student = ctx.model_fn(student_stage)()
        model = build_exit_model(student, cfg, len(splits.labels))
        reader = TeacherCache(cache_stage.path / "cache", len(splits.train))
        steps = -(-len(splits.train) // cfg.batch_size)
        weights = cfg.stage1.weights or default_weights(model.num_exits)
        if len(weights) != model.num_exits + 1:
            from pocketvit.errors import RecipeError

            raise RecipeError(f"exits.stage1.weights has {len(weights)} values; give {model.num_exits + 1} "
                              "(one per exit, then the final head)")
        train_exits(model, lambda e: reader.batches(splits, aug, e, cfg.batch_size, recipe.seed), steps, path,
                    stage1_epochs=cfg.stage1.epochs, stage1_lr=cfg.stage1.lr, stage2_epochs=cfg.stage2.epochs,
                    stage2_lr=cfg.stage2.lr, weight_decay=cfg.weight_decay, weights=weights,
                    alpha=cfg.stage2.alpha, temperature=cfg.stage2.temperature)
        save_weights(model, path / "exits.safetensors")
        save_weights(model.student(), path / "student.safetensors")
        meta = model_meta(model.student(), recipe.student.arch, recipe.student.options, splits)
        out: dict[str, Any] = {}
        for split_name, data in (("val", splits.val), ("test", splits.test)):
            logits = exit_logits(model, (splits.normalize(x) for x, _ in plain_batches(data, 500))).numpy()
            np.save(path / f"{split_name}_logits.npy", logits.astype(np.float32))
            acc = (logits.argmax(-1) == data.labels.numpy()[None]).mean(1)
            out[split_name] = [round(float(a), 5) for a in acc]
        specs = exit_specs(model)
        meta.update(
            val_top1=out["val"][-1], test_top1=out["test"][-1],
            exits=[{"name": s.name, "after_block": s.after_block, "head": s.head, "method": s.method,
                    "val_top1": out["val"][i], "test_top1": out["test"][i]} for i, s in enumerate(specs)],
            head_params=[sum(p.numel() for p in h.parameters()) for h in model.heads],
            loss_weights=list(weights),
            **segment_costs(model, splits.shape),
        )
        log("  exits (eager test top-1): " + ", ".join(f"{e['name']} {e['test_top1']:.4f}" for e in meta["exits"]))
        return meta

    return run


def calibrate_stage_fn(ctx: BuildContext, exits_stage: StageResult) -> Callable[[Path], dict]:
    splits, cfg = ctx.splits, ctx.recipe.exits

    def run(path: Path) -> dict[str, Any]:
        from pocketvit.exits.calibrate import calibrate, evaluate, softmax_np

        costs = np.asarray(exits_stage.meta["exit_cost"])
        val = np.load(exits_stage.path / "val_logits.npy")
        cal = calibrate(val, splits.val.labels.numpy(), costs, budget=max(0.0, cfg.budget - cfg.margin),
                        bound=cfg.confidence)
        test = np.load(exits_stage.path / "test_logits.npy")
        probs = softmax_np(test)
        correct = probs.argmax(-1) == splits.test.labels.numpy()[None]
        acc, cost, hist = evaluate(probs[:-1].max(-1), correct, costs, cal.thresholds)
        meta = {
            "budget": cfg.budget, "margin": cfg.margin, "confidence": cfg.confidence, "thresholds": cal.thresholds,
            "val": {"top1": cal.accuracy, "full_top1": cal.full_accuracy, "cost": cal.cost, "exit_histogram": cal.histogram},
            "eager_test": {"top1": acc, "full_top1": float(correct[-1].mean()), "cost": cost,
                           "exit_histogram": hist.tolist()},
            "curve": cal.curve,
        }
        log(f"  exit thresholds {[round(t, 4) for t in cal.thresholds]}: val top-1 {cal.accuracy:.4f} "
            f"(full {cal.full_accuracy:.4f}), expected compute {cal.cost:.3f}x; eager test {acc:.4f} "
            f"(full {meta['eager_test']['full_top1']:.4f}) at {cost:.3f}x")
        return meta

    return run


def exit_program_stage_fn(ctx: BuildContext, target: str, exits_stage: StageResult) -> Callable[[Path], dict]:
    splits, spec, name = ctx.splits, ctx.spec, ctx.name

    def run(path: Path) -> dict[str, Any]:
        from pocketvit.exits.export import export_segments

        model = load_exit_model(exits_stage, splits)
        example = torch.zeros(1, spec["channels"], spec["height"], spec["width"])
        return export_segments(model, example, target, path, model_name=f"{name} exits")

    return run


def load_exit_model(exits_stage: StageResult, splits: Any):
    from pocketvit.exits.model import EarlyExitModel
    from pocketvit.models.weights import build_from_meta, load_weights

    meta = exits_stage.meta
    kinds = [e["head"] for e in meta["exits"][:-1]]
    model = EarlyExitModel(build_from_meta(meta, splits), [e["after_block"] for e in meta["exits"][:-1]], kinds,
                           len(splits.labels))
    return load_weights(model, exits_stage.path / "exits.safetensors", "exit model")


def measure_stage_fn(ctx: BuildContext, target: str, exported: StageResult, exit_export: StageResult,
                     calibration: StageResult, exits_stage: StageResult) -> Callable[[Path], dict]:
    """The exit program on `target`'s runtime (pocketvit.runtime, exactly as an app runs it) over the whole
    test split. Per image, in turn: the unsegmented model, the exit chain, and the chain with exits
    disabled (every segment runs); wall time of each predict call (runtime + exit decisions +
    postprocessing)."""
    from pocketvit.models import source_block

    splits, spec, cfg, name = ctx.splits, ctx.spec, ctx.recipe.verify, ctx.name
    c, h, _ = splits.shape
    source = source_block(ctx.recipe.student.arch, ctx.recipe.student.options, c, len(splits.labels), h)

    def run(path: Path) -> dict[str, Any]:
        import platform
        import time

        from pocketvit.bench.measure import runtime_inputs
        from pocketvit.exits.bundle import add_exit_programs
        from pocketvit.exits.calibrate import exit_points, softmax_np
        from pocketvit.export import ExportedFile
        from pocketvit.export.bundle import write_bundle_dir
        from pocketvit.progress import progress_bar
        from pocketvit.runtime import load

        thresholds = calibration.meta["thresholds"]
        entry: dict[str, Any] = {"thresholds": thresholds, "budget": calibration.meta["budget"],
                                 "exits": [e["name"] for e in exit_export.meta["exits"]],
                                 "eager": calibration.meta["eager_test"], "val": calibration.meta["val"],
                                 "curve": calibration.meta["curve"]}
        if exported.meta["runtime"] == "coreml" and platform.system() != "Darwin":
            entry.update(test_top1=None, full_test_top1=None, mean_latency_ms=None, full_latency_ms=None,
                         exit_histogram=None, note="Core ML cannot execute on Linux: segments converted and "
                         "spec-checked only")
            return entry
        bundle = path / "bundle"
        main = ExportedFile(target, exported.path / exported.meta["file"], exported.meta["runtime"],
                            exported.meta["precision"])
        write_bundle_dir(bundle, name=name, files=[main], labels=splits.labels, input_spec=spec, source=source,
                         reference_weights=exits_stage.path / "student.safetensors")
        add_exit_programs(bundle, {target: (exit_export.path, exit_export.meta)}, thresholds,
                          exits_stage.path / "exits.safetensors")
        x = runtime_inputs(splits, spec)
        labels = splits.test.labels.numpy()
        p_exit = load(bundle, target=target, num_threads=cfg.threads, warmup=5, use_exits=True)
        p_full = load(bundle, target=target, num_threads=cfg.threads, warmup=5, use_exits=False)
        names = [e["name"] for e in p_exit.exits]
        index = {n: i for i, n in enumerate(names)}
        n = len(x)
        t_full, t_exit, t_seg = np.zeros(n), np.zeros(n), np.zeros(n)
        rt_exit = np.zeros(n)
        pred_full, pred_exit, pred_seg = (np.zeros(n, dtype=np.int64) for _ in range(3))
        taken = np.zeros(n, dtype=np.int64)
        clock = time.perf_counter
        with progress_bar(f"exits on {target}: full / exits / segmented", n) as advance:
            for i in range(n):
                xi = x[i : i + 1]
                t0 = clock()
                pf = p_full.predict_array(xi, topk=1)[0]
                t1 = clock()
                pe = p_exit.predict_array(xi, topk=1)[0]
                t2 = clock()
                ps = p_exit.predict_array(xi, topk=1, stop_early=False)[0]
                t3 = clock()
                t_full[i], t_exit[i], t_seg[i] = (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3
                rt_exit[i] = pe.latency_ms
                pred_full[i], pred_exit[i], pred_seg[i] = pf.index, pe.index, ps.index
                taken[i] = index[pe.exit] if pe.exit is not None else len(names) - 1
                advance(1)
        p_exit.close()
        p_full.close()
        # eager decisions on the same images (the exits stage's logits) for parity
        logits = np.load(exits_stage.path / "test_logits.npy")
        probs = softmax_np(logits)
        eager_at = exit_points(probs[:-1].max(-1), thresholds)
        eager_pred = probs.argmax(-1)[eager_at, np.arange(n)]
        hist = np.bincount(taken, minlength=len(names))
        entry.update(
            test_top1=float((pred_exit == labels).mean()),
            full_test_top1=float((pred_full == labels).mean()),
            segmented_full_test_top1=float((pred_seg == labels).mean()),
            mean_latency_ms=float(t_exit.mean()),
            full_latency_ms=float(t_full.mean()),
            segmented_full_latency_ms=float(t_seg.mean()),
            median_latency_ms={"exits": float(np.median(t_exit)), "full": float(np.median(t_full)),
                               "segmented_full": float(np.median(t_seg))},
            runtime_only_mean_ms=float(rt_exit.mean()),
            exit_histogram={nm: int(c) for nm, c in zip(names, hist)},
            latency_ms_by_exit={nm: float(t_exit[taken == j].mean()) if (taken == j).any() else None
                                for j, nm in enumerate(names)},
            decision_agreement=float((eager_at == taken).mean()),
            top1_agreement_with_eager=float((eager_pred == pred_exit).mean()),
            threads=cfg.threads, images=n,
        )
        entry["speedup"] = entry["full_latency_ms"] / entry["mean_latency_ms"]
        entry["latency_ratio"] = entry["mean_latency_ms"] / entry["full_latency_ms"]
        entry["segmenting_overhead"] = entry["segmented_full_latency_ms"] / entry["full_latency_ms"] - 1
        entry["top1_drop"] = entry["full_test_top1"] - entry["test_top1"]
        log(f"  exits on {target}: top-1 {entry['test_top1']:.4f} (full {entry['full_test_top1']:.4f}), mean "
            f"{entry['mean_latency_ms']:.3f} ms vs full {entry['full_latency_ms']:.3f} ms "
            f"({entry['latency_ratio']:.2f}x), segmented with exits off {entry['segmented_full_latency_ms']:.3f} ms "
            f"({entry['segmenting_overhead']:+.1%}); exits {entry['exit_histogram']}; eager decisions agree "
            f"{entry['decision_agreement']:.4f}")
        return entry

    return run
