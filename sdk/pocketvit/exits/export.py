"""Export an EarlyExitModel as segments (LGViT, METHODS.md): seg0 = blocks up to exit 1 + exit head 1,
seg1 = the next blocks + exit head 2, ..., last = the remaining blocks + the final head.

    executorch  one .pte, one method per segment (XNNPACK; the layernorm-as-linear rewrite applied to
                each segment, which is safe here because no two methods share a weight)
    litert      one .tflite, one signature per segment
    onnx        one .onnx per segment (an ONNX file holds one graph)
    coreml      one .mlpackage per segment (fp16; converted and spec-checked, Core ML runs on Apple only)

Returns a dict for the stage meta: {runtime, precision, segments: [{method, file}], info}. In the bundle
these become files[target]["segments"] (runtime/manifest.py), which pocketvit.runtime chains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pocketvit.errors import ExportError
from pocketvit.exits.model import EarlyExitModel, exit_specs, segment_examples
from pocketvit.runtime.targets import RUNTIMES

EXIT_TARGETS = RUNTIMES  # every runtime runs a segmented exit program
FILE_STEM = "exits"


def export_segments(model: EarlyExitModel, example: torch.Tensor, target: str, out_dir: Path | str,
                    model_name: str = "model") -> dict[str, Any]:
    if target not in EXIT_TARGETS:
        raise ExportError(f"early exits export to {', '.join(EXIT_TARGETS)}, not {target!r}; "
                          "set exits.targets in the recipe")
    out_dir = Path(out_dir)
    model = model.eval()
    specs = exit_specs(model)
    segs = model.segments()
    examples = segment_examples(model, example)
    methods = {s.method: (seg, args) for s, seg, args in zip(specs, segs, examples)}
    segments: list[dict[str, str]] = []
    if target == "executorch":
        from pocketvit.export.executorch import export_executorch_methods
        from pocketvit.export.prepare import prepare_many
        from pocketvit.export.rewrites import apply_rewrites

        names = list(methods)
        prepared = prepare_many([methods[n][0] for n in names], unfused_attention=True)
        # once over all segments: they share the backbone, and a rewrite must not wrap a module twice
        rewrites = apply_rewrites(torch.nn.ModuleList(prepared), target)
        f = export_executorch_methods({n: (m, methods[n][1]) for n, m in zip(names, prepared)},
                                      out_dir / f"{FILE_STEM}.pte", model_name=model_name, prepare=False)
        f.info["rewrites"] = rewrites
        segments = [{"method": n, "file": f.path.name} for n in names]
        runtime, precision, info = f.runtime, f.precision, f.info
    elif target == "litert":
        from pocketvit.export.litert import export_litert_signatures

        f = export_litert_signatures(methods, out_dir / f"{FILE_STEM}.tflite", model_name=model_name)
        segments = [{"method": n, "file": f.path.name} for n in methods]
        runtime, precision, info = f.runtime, f.precision, f.info
    else:
        from pocketvit.export import export_model

        info = {"per_segment": {}}
        runtime = precision = None
        for n, (seg, args) in methods.items():
            f = export_model(seg, args[0], target, out_dir, name=f"{FILE_STEM}-{n}", model_name=f"{model_name} {n}")
            segments.append({"method": n, "file": f.path.name})
            info["per_segment"][n] = f.info
            runtime, precision = f.runtime, f.precision
    return {"runtime": runtime, "precision": precision, "segments": segments, "info": info,
            "exits": [{"name": s.name, "after_block": s.after_block, "head": s.head, "method": s.method}
                      for s in specs]}
