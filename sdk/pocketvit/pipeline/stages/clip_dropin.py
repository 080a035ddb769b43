"""Drop-in files of a zero-shot bundle: the image contract inside the graph, the L2-normalised embedding out.

`export.dropin` works as for classify builds (default: a `litert-dropin` file when litert is a target). The
file takes NHWC uint8 (or float 0..255) RGB pixels, converts a gray model's input inside, normalizes inside and
outputs the embedding (no softmax), so MediaPipe Tasks' `ImageEmbedder` loads it as it is; the bundle writer
embeds image-embedder TFLite metadata (export/metadata.py). Each drop-in file is measured like the float files:
stage `zeroshot-<runtime>-dropin` runs it on its own runtime over the whole test split (clip/zeroshot.py).

Core ML's drop-in file is an image *classifier* (ClassifierConfig), which has no meaning for an embedding, so a
zero-shot build leaves it out by default and refuses it when export.dropin names it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pocketvit.errors import RecipeError
from pocketvit.pipeline.context import BuildContext


def zero_shot_dropin_runtimes(recipe: Any) -> list[str]:
    """export.dropin, or LiteRT's when litert is a target; never Core ML (its drop-in form is a classifier)."""
    from pocketvit.pipeline.stages.targets import dropin_runtimes

    chosen = getattr(recipe.export, "dropin", None)
    if chosen is not None and "coreml" in chosen:
        raise RecipeError("export.dropin: coreml — Core ML's drop-in file is an image classifier (ClassifierConfig), "
                          "which a zero-shot bundle cannot be; use litert, onnx or executorch drop-ins, or remove "
                          "coreml from export.dropin (the float coreml target is still exported).")
    return [r for r in dropin_runtimes(recipe) if r != "coreml"]


def zero_shot_dropin_stages(ctx: BuildContext, inputs: list, text: Any, model_fn: Callable[[], Any],
                            class_emb: np.ndarray, heldout: Sequence[int], exported: dict, targets: dict) -> None:
    """Stages export-<runtime>-dropin (task zero-shot: no softmax) and zeroshot-<runtime>-dropin, added to
    `exported` (the bundle) and `targets` (report.json) like the float targets."""
    from pocketvit.clip.zeroshot import runtime_zero_shot_stage_fn
    from pocketvit.export.dropin import dropin_target
    from pocketvit.pipeline.stages.targets import dropin_export_stage_fn, verify_config

    recipe, runner, data, splits, spec = ctx.recipe, ctx.runner, ctx.data, ctx.splits, ctx.spec
    dtype = getattr(recipe.export, "dropin_input", "uint8")
    for runtime in zero_shot_dropin_runtimes(recipe):
        t = dropin_target(runtime)
        exp = runner.run(f"export-{t}", {"target": t, "input": dtype, "task": "zero-shot"}, inputs,
                         dropin_export_stage_fn(runtime, model_fn, spec, recipe.name, dtype, list(splits.labels),
                                                task="zero-shot"))
        exported[t] = exp
        targets[t] = runner.run(f"zeroshot-{t}", verify_config(recipe.verify), [exp, data, text],
                                runtime_zero_shot_stage_fn(t, exp, model_fn, splits, spec, class_emb, heldout,
                                                           recipe.verify)).meta


__all__ = ["zero_shot_dropin_runtimes", "zero_shot_dropin_stages"]
