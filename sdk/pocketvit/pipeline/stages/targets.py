"""Export and verification stages: every figure comes from running the exported file on its runtime."""

from __future__ import annotations

import platform
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch

from pocketvit.bench.latency import file_latency
from pocketvit.bench.measure import (
    agreement_with_teacher,
    file_inputs,
    parity,
    run_batch1,
    runtime_inputs,
)
from pocketvit.data.datasets import Splits
from pocketvit.pipeline.context import BuildContext
from pocketvit.pipeline.runner import StageResult
from pocketvit.progress import log
from pocketvit.recipe.schema import stable_dump
from pocketvit.runtime.io import path_bytes

ModelFn = Callable[[], torch.nn.Module]


def export_stage_fn(target: str, model_fn: ModelFn, spec: dict[str, Any], name: str,
                    no_rewrite: tuple[str, ...] = ()) -> Callable[[Path], dict]:
    def run(path: Path) -> dict[str, Any]:
        from pocketvit.export import export_model

        model = model_fn()
        example = torch.zeros(1, spec["channels"], spec["height"], spec["width"])
        f = export_model(model, example, target, path, name="model", model_name=name, disabled_rewrites=no_rewrite)
        return {"file": f.path.name, "runtime": f.runtime, "precision": f.precision, "info": f.info}

    return run


def dropin_export_stage_fn(runtime: str, model_fn: ModelFn, spec: dict[str, Any], name: str,
                           input_dtype: str = "uint8", labels: list[str] | None = None,
                           task: str = "classify") -> Callable[[Path], dict]:
    """Stage `export-<runtime>-dropin`: the model with NHWC pixels in, normalization and softmax inside
    (no softmax for a zero-shot / embed model: its output is the embedding)."""
    def run(path: Path) -> dict[str, Any]:
        from pocketvit.export.dropin import export_dropin

        f = export_dropin(model_fn(), spec, runtime, path, input_dtype=input_dtype, labels=labels, model_name=name,
                          task=task)
        return {"file": f.path.name, "runtime": f.runtime, "precision": f.precision, "info": f.info}

    return run


def verify_stage_fn(
    target: str, exported: Any, model_fn: ModelFn, splits: Splits, spec: dict[str, Any], cfg: Any
) -> Callable[[Path], dict]:
    def run(path: Path) -> dict[str, Any]:
        file = exported.path / exported.meta["file"]
        entry: dict[str, Any] = {
            "file": exported.meta["file"], "bytes": path_bytes(file), "runtime": exported.meta["runtime"],
            "precision": exported.meta["precision"], "export_info": exported.meta["info"],
        }
        reason = (exported.meta.get("info") or {}).get("fallback_reason")
        if reason:  # the exporter took its second route (ONNX: TorchScript, Core ML: torch.jit.trace)
            info = exported.meta["info"]
            log(f"  [yellow]{target}: fallback[/yellow] — exported with {info.get('exporter') or info.get('frontend')} "
                f"after the first route failed ({reason})")
        if exported.meta["runtime"] == "coreml" and platform.system() != "Darwin":
            log(f"  {target}: converted and spec-checked; Core ML models execute only on macOS/iOS — not run here")
            entry.update(test_top1=None, parity=None, latency_ms=None,
                         note="Core ML cannot execute on Linux: conversion and spec check only")
            return entry
        from pocketvit.runtime import open_backend

        x = runtime_inputs(splits, spec)
        # a drop-in file takes its own form (NHWC pixels, RGB for a gray model) and outputs probabilities
        info = exported.meta.get("info") or {}
        xr = file_inputs(splits, spec, info, x)
        backend = open_backend(exported.meta["runtime"], str(file), num_threads=cfg.threads)
        out = run_batch1(backend.run, xr, f"verify {target} on its runtime")
        model = model_fn()
        with torch.no_grad():
            eager = torch.cat([model(torch.from_numpy(x[i : i + 500])) for i in range(0, len(x), 500)])
            eager = (torch.softmax(eager, dim=1) if info.get("file_outputs") == "probabilities" else eager).numpy()
        labels = splits.test.labels.numpy()
        entry["test_top1"] = float((out.argmax(1) == labels).mean()) if splits.labeled else None
        entry["eager_test_top1"] = float((eager.argmax(1) == labels).mean()) if splits.labeled else None
        agreement_with_teacher(entry, out, eager, splits)
        entry["parity"] = parity(out, eager, info.get("file_outputs", "logits"))
        entry["runtime_info"] = backend.describe()
        for fb in backend.fallbacks:
            log(f"  [yellow]{target}: fallback[/yellow] — {fb}")
        backend.close()  # latency: timed as `pocketvit bench` times it (a process of its own at more than 1 thread)
        entry["latency_ms"] = file_latency(exported.meta["runtime"], file, xr[:1], cfg.latency_runs, cfg.threads)
        tol = cfg.tolerance
        p = entry["parity"]
        entry["within_tolerance"] = bool(
            p["max_abs_diff"] <= tol.max_abs_diff and p["cosine"] >= tol.cosine and p["top1_agreement"] >= tol.top1_agreement
        )
        measure = (f"test top-1 {entry['test_top1']:.4f}" if splits.labeled else
                   f"teacher agreement {entry['teacher_agreement']:.4f}")
        eager_measure = entry["eager_test_top1"] if splits.labeled else entry.get("eager_teacher_agreement")
        log(f"  {target}: {measure} on {exported.meta['runtime']} "
            f"(eager {eager_measure:.4f}), agreement {p['top1_agreement']:.4f}, "
            f"max|Δ| {p['max_abs_diff']:.2e}, median {entry['latency_ms']['median']:.2f} ms")
        return entry

    return run


def dropin_runtimes(recipe: Any) -> list[str]:
    """Runtimes whose drop-in file the build writes: export.dropin, or LiteRT's and Core ML's for those targets."""
    from pocketvit.export.dropin import DEFAULT_DROPIN

    chosen = getattr(recipe.export, "dropin", None)
    return list(chosen) if chosen is not None else [r for r in DEFAULT_DROPIN if r in recipe.export.targets]


def verify_config(cfg: Any) -> dict[str, Any]:
    """The config a measuring stage (verify-, exits-, zeroshot-) hashes: what it measures with. `on_mismatch` is
    left out: it decides what the build does with the figures afterwards (pipeline/stages/verdicts.py), so changing
    it reruns nothing."""
    return {k: v for k, v in stable_dump(cfg).items() if k != "on_mismatch"}


def export_stage(ctx: BuildContext, target: str, model_stage: StageResult, model_fn: ModelFn) -> StageResult:
    """Stage export-<target>: the float file (with the recipe's export.no_rewrite)."""
    no_rw = tuple(ctx.recipe.export.no_rewrite)
    return ctx.run(f"export-{target}", {"target": target} | ({"no_rewrite": list(no_rw)} if no_rw else {}),
                   [model_stage], export_stage_fn(target, model_fn, ctx.spec, ctx.name, no_rw))


def verify_stage(ctx: BuildContext, target: str, exported: StageResult, model_fn: ModelFn, cfg: Any) -> StageResult:
    """Stage verify-<target>: the exported file on its runtime over the whole test split."""
    return ctx.run(f"verify-{target}", verify_config(cfg), [exported, ctx.data],
                   verify_stage_fn(target, exported, model_fn, ctx.splits, ctx.spec, cfg))


def dropin_exports(ctx: BuildContext, inputs: list[StageResult], model_fn: ModelFn) -> dict[str, StageResult]:
    """Stages export-<runtime>-dropin: the image contract inside the graph, beside the float files; each is then
    verified like any other target (against softmax of eager torch, over the whole test split)."""
    from pocketvit.export.dropin import dropin_target

    recipe = ctx.recipe
    dtype = getattr(recipe.export, "dropin_input", "uint8")
    out = {}
    for runtime in dropin_runtimes(recipe):
        t = dropin_target(runtime)
        out[t] = ctx.run(f"export-{t}", {"target": t, "input": dtype}, inputs,
                         dropin_export_stage_fn(runtime, model_fn, ctx.spec, recipe.name, dtype, list(ctx.splits.labels)))
    return out
