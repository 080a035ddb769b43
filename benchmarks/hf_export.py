"""Hugging Face image classifiers through `pocketvit export hf:FOLDER`: tiny ViT, DeiT, ConvNeXt, MobileViT, Swin
and EfficientNet folders (random weights, 3 labels, 32x32, each with its own image processor, written by
save_pretrained) exported to every target and checked on each runtime (Core ML: conversion + spec check).

    python -m benchmarks.hf_export [--out docs/results/hf-export.json] [--kind vit ...]

`tiny_folder` is also what tests/models/test_source_hf.py builds its folders with.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

KINDS = ("vit", "deit", "convnext", "mobilevit", "swin", "efficientnet")
LABELS = ["cat", "dog", "fox"]


def _configs(t) -> dict[str, tuple[Any, Any]]:
    return {
        "vit": (t.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64), t.ViTImageProcessor(size={"height": 32, "width": 32})),
        "deit": (t.DeiTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=64),
                 t.DeiTImageProcessor(size={"height": 36, "width": 36}, crop_size={"height": 32, "width": 32})),
        "convnext": (t.ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1]),
                     t.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875)),
        "mobilevit": (t.MobileViTConfig(image_size=32, hidden_sizes=[16, 24, 32],
                                        neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 48]),
                      t.MobileViTImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32})),
        "swin": (t.SwinConfig(image_size=32, patch_size=2, embed_dim=8, depths=[1, 1], num_heads=[1, 2],
                              window_size=4), t.ViTImageProcessor(size={"height": 32, "width": 32})),
        "efficientnet": (t.EfficientNetConfig(image_size=32, width_coefficient=0.1, depth_coefficient=0.1,
                                              hidden_dim=128),
                         t.EfficientNetImageProcessor(size={"height": 32, "width": 32}, rescale_offset=True,
                                                      rescale_factor=1 / 127.5)),
    }


def tiny_folder(root: Path, kind: str):
    """(folder, model, processor): a save_pretrained folder of a tiny `kind` classifier with spread logits (every
    parameter nudged, BatchNorm statistics re-estimated) and its own image processor."""
    import torch
    import transformers
    from pocketvit.export.prepare import recalibrate_batchnorm

    config, processor = _configs(transformers)[kind]
    config.num_labels = len(LABELS)
    config.id2label = dict(enumerate(LABELS))
    config.label2id = {v: k for k, v in enumerate(LABELS)}
    config.architectures = []  # transformers 5.24 iterates over it (None) to choose among DeiT's two classes
    torch.manual_seed(0)
    model = transformers.AutoModelForImageClassification.from_config(config).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    recalibrate_batchnorm(model, (4, 3, 32, 32), batches=2)
    folder = Path(root) / f"tiny-{kind}"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder, model, processor


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/results/hf-export.json"))
    ap.add_argument("--kind", action="append", choices=KINDS)
    args = ap.parse_args(argv)
    from pocketvit.models.sources import resolve_model
    from pocketvit.pipeline.export_model import export_to_bundle
    from pocketvit.runtime.io import write_json

    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kind or KINDS:
            folder, _, _ = tiny_folder(Path(tmp), kind)
            resolved = resolve_model(f"hf:{folder}")
            result = export_to_bundle(resolved, ["executorch", "litert", "onnx", "coreml"], Path(tmp) / f"b-{kind}",
                                      n_inputs=8, latency_runs=3)
            targets = {}
            for t, r in result["targets"].items():
                p = r.get("parity") or {}
                targets[t] = {"status": "converted + spec check (Core ML cannot run on Linux)"
                              if r["status"] == "not run" else r["status"], "summary": r.get("summary"),
                              **{k: p[k] for k in ("cosine", "max_abs_diff", "top1_agreement") if k in p}}
                if r["status"] == "failed":
                    targets[t]["error"] = r["error"]
            rows[f"hf:tiny-{kind}"] = {"input": {k: result["input"][k] for k in ("height", "width", "color_order",
                                                                                 "resize", "crop", "scale", "mean",
                                                                                 "std")},
                                       "labels": resolved.labels, "notes": result["notes"], "targets": targets}
            print(kind, {t: c["status"] for t, c in targets.items()}, flush=True)
    write_json(args.out, {"command": "python -m benchmarks.hf_export", "models": rows})


if __name__ == "__main__":
    main()
