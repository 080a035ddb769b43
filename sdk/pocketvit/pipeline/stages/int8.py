"""`pocketvit build` stages for int8 targets: one quantization plan (calibration images + the sensitivity
pass's mixed-precision choice), then one export per int8 target that the verify stage measures like any
other target (its runtime, whole test split, parity against eager fp32, latency)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pocketvit.export.quantize.calibration import PLAN_FILE, plan_calibration
from pocketvit.pipeline.context import BuildContext
from pocketvit.pipeline.runner import StageResult
from pocketvit.runtime.io import atomic_path

ModelFn = Callable[[], Any]


def quant_config(target: str, q: Any):
    """The target's config dataclass from the recipe's `quantize` section."""
    from pocketvit.export.quantize import config_for

    base = target.split("-", 1)[0]
    per_channel = q.weights == "per-channel"
    mode = {"executorch": {"mode": q.executorch, "per_channel": per_channel},
            "litert": {"mode": q.litert, "per_channel": per_channel}, "coreml": {"mode": q.coreml, "nbits": q.coreml_nbits}}
    return config_for(base, **mode.get(base, {}))


def plan_stage_fn(model_fn: ModelFn, splits: Any, spec: dict[str, Any], q: Any, seed: int) -> Callable[[Path], dict]:
    """Draw the calibration images (train) and, with q.sensitivity, choose the layers kept in float.

    One sensitivity pass (XNNPACK's PT2E int8 simulated in torch) serves every int8 target: which layers are
    fragile is a property of the model; each target's own accuracy is then measured on its runtime.
    """

    def run(path: Path) -> dict[str, Any]:
        import torch

        from pocketvit.export.quantize.calibration import calibration_images, held_out_images

        calib, idx = calibration_images(splits, q.calibration_images, seed)
        with atomic_path(path / PLAN_FILE) as tmp, open(tmp, "wb") as f:
            np.save(f, idx)
        meta: dict[str, Any] = {"calibration": {"split": "train", "images": len(idx), "file": PLAN_FILE},
                                "budget": q.budget, "float_layers": [], "sensitivity": None}
        if q.sensitivity:
            from pocketvit.export.quantize.pt2e import xnnpack_quantizer
            from pocketvit.export.quantize.sensitivity import choose_float_layers

            held_x, held_y = held_out_images(splits, q.held_out_images, seed + 1)
            example = torch.zeros(1, spec["channels"], spec["height"], spec["width"])
            result = choose_float_layers(model_fn(), example, calib, held_x, held_y,
                                         xnnpack_quantizer(per_channel=q.weights == "per-channel"), q.budget,
                                         min_agreement=q.min_agreement)
            meta["sensitivity"] = result.to_dict()
            meta["float_layers"] = result.float_layers
        from pocketvit.export.quantize.sulq import post_softmax_errors

        meta["post_softmax"] = post_softmax_errors(model_fn(), calib[:32])  # what I&S-ViT's SULQ would buy
        return meta

    return run


def int8_export_stage_fn(target: str, model_fn: ModelFn, plan: Any, splits: Any, spec: dict[str, Any], q: Any,
                    name: str, float_layers: list[str]) -> Callable[[Path], dict]:
    def run(path: Path) -> dict[str, Any]:
        import torch

        from pocketvit.export._common import file_extension
        from pocketvit.export.quantize import quantize_export

        base = target.split("-", 1)[0]
        example = torch.zeros(1, spec["channels"], spec["height"], spec["width"])
        f = quantize_export(model_fn(), example, plan_calibration(plan, splits), quant_config(target, q),
                            path / f"model{file_extension(base)}", float_layers=float_layers, model_name=name)
        return {"file": f.path.name, "runtime": f.runtime, "precision": f.precision, "info": f.info}

    return run


def int8_exports(ctx: BuildContext, student: StageResult, model_fn: ModelFn, cache: StageResult | None = None
                 ) -> dict[str, tuple[StageResult, Any]]:
    """Run the plan and the export stage of every int8 target in the recipe: {target: (export stage,
    verify settings with the int8 tolerance)}; {} when the recipe lists no int8 target."""
    recipe, runner, data, splits, spec = ctx.recipe, ctx.runner, ctx.data, ctx.splits, ctx.spec
    q = recipe.quantize
    wanted = [t for t in recipe.export.targets if t.endswith("-int8")]
    if not wanted:
        return {}
    from pocketvit.recipe.schema import stable_dump

    plan_cfg = stable_dump(q)
    for key in ("executorch", "litert", "coreml", "tolerance", "coreml_nbits", "qat", "qat_epochs", "qat_lr",
                "qat_teacher"):
        plan_cfg.pop(key, None)
    # pass 2: convs are really quantized when ranked alone (pt2e._under_modules); plans made before chose wrongly
    plan_cfg |= {"seed": recipe.seed, "sensitivity_pass": 2}
    plan = runner.run("quantize-plan", plan_cfg, [student, data], plan_stage_fn(model_fn, splits, spec, q, recipe.seed))
    from pocketvit.export.quantize.qat import QAT_TARGETS
    from pocketvit.pipeline.stages.qat import qat_model_fn, qat_summary, run_qat

    qat = run_qat(recipe, runner, student, plan, cache, splits, spec, model_fn)
    verify_cfg = recipe.verify.model_copy(update={"tolerance": q.tolerance})
    out = {}
    for target in wanted:
        cfg = {"target": target, "config": quant_config(target, q).describe()}
        pt2e = target.split("-", 1)[0] in QAT_TARGETS
        use_qat = qat is not None and qat.meta.get("used") and pt2e  # QAT weights, float layers chosen again on them
        source = qat if use_qat else plan
        exp = runner.run(f"export-{target}", cfg, [student, plan, qat] if use_qat else [student, plan],
                         int8_export_stage_fn(target, qat_model_fn(qat, model_fn) if use_qat else model_fn, plan, splits,
                                         spec, q, recipe.name, source.meta["float_layers"]))
        exp.meta["info"]["plan"] = _plan_summary(plan.meta)
        if qat is not None and pt2e:
            exp.meta["info"]["qat"] = qat_summary(qat.meta)
        out[target] = (exp, verify_cfg)
    return out


def _plan_summary(meta: dict[str, Any]) -> dict[str, Any]:
    s = meta.get("sensitivity") or {}
    keep = ("budget", "fp32_top1", "all_int8_top1", "final_top1", "met", "held_out_images", "steps")
    return {"calibration": meta["calibration"], "float_layers": meta["float_layers"],
            "post_softmax": meta.get("post_softmax"),
            "sensitivity": {k: s[k] for k in keep if k in s} | {"ranking": s.get("ranking", [])[:5]} if s else None}
