"""The `text-encoder-<runtime>` stages of the CLIP build: the text encoder exported into the zero-shot bundle and
measured on its runtime (see clip/text_bundle.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pocketvit.clip.text_bundle import (
    MODEL_NAMES,
    VOCAB,
    export_text_model,
    free_text_prompts,
    load_bundle_text_encoder,
    runtime_text_encoder,
    tokenizer_options,
)
from pocketvit.errors import RecipeError
from pocketvit.progress import log


def text_encoder_stage_fn(recipe: Any, runtime: str, load_encoder: Callable[[], Any], image_stage: Any,
                          splits: Any, spec: dict[str, Any], class_emb: np.ndarray,
                          class_names: list[str], threads: int | None) -> Callable[[Path], dict[str, Any]]:
    """Stage `text-encoder-<runtime>`: export, then measure (module docstring)."""
    def run(path: Path) -> dict[str, Any]:
        from pocketvit.clip.corpus import text_corpus
        from pocketvit.clip.zeroshot import runtime_embeddings, zero_shot_scores
        from pocketvit.runtime.io import write_json

        max_tokens = recipe.clip.text_encoder_max_tokens
        encoder = load_encoder().eval()
        vocab, tok = tokenizer_options(encoder.tokenizer, "clip.text_encoder_in_bundle")
        (path / VOCAB).write_text("\n".join(vocab) + "\n", encoding="utf-8")
        exported = export_text_model(encoder, runtime, path / MODEL_NAMES[runtime], max_tokens, "text encoder")
        meta: dict[str, Any] = {"file": MODEL_NAMES[runtime], "runtime": runtime, "source": encoder.name,
                                "dim": int(encoder.dim), "max_tokens": max_tokens, "pooling": encoder.pooling,
                                "tokenizer": tok, "params": sum(p.numel() for p in encoder.model.parameters()),
                                "export_info": exported.info}
        enc = runtime_text_encoder(path / MODEL_NAMES[runtime], runtime, path / VOCAB, tok, max_tokens,
                                   int(encoder.dim), encoder.pooling, threads)
        # 1. the runtime's embeddings (numpy tokenizer + file + numpy pooling) against the eager encoder
        _, held = text_corpus(None, recipe.clip.text_encoder_eval_sentences, recipe.seed)
        eager, rt = encoder.encode(held).numpy(), enc.encode(held)
        cos = (eager * rt).sum(1)
        fits = np.array([len(enc.tokenizer.pieces(s)) + 2 <= max_tokens for s in held])
        meta["heldout"] = {"sentences": len(held), "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
                           "within_max_tokens": int(fits.sum()),
                           "cosine_mean_within": float(cos[fits].mean()) if fits.any() else None,
                           "cosine_min_within": float(cos[fits].min()) if fits.any() else None}
        # 2. zero-shot on the test split: free-text prompts embedded on the runtime vs the stored class embeddings
        img = runtime_embeddings(image_stage, splits, spec, threads, f"zero-shot images on {image_stage.meta['runtime']}")
        labels = splits.test.labels.numpy()
        z: dict[str, Any] = {"image_runtime": image_stage.meta["runtime"], "images": len(labels),
                             "class_embeddings_top1": zero_shot_scores(img, class_emb, labels)["test_top1"],
                             "prompt_sets": {}}
        for set_name, prompts in free_text_prompts(class_names).items():
            free_rt, free_eager = enc.encode(prompts), encoder.encode(prompts).numpy()
            z["prompt_sets"][set_name] = {
                "prompts": prompts, "runtime_top1": zero_shot_scores(img, free_rt, labels)["test_top1"],
                "eager_top1": zero_shot_scores(img, free_eager, labels)["test_top1"],
                "prompt_cosine_min": float((free_rt * free_eager).sum(1).min())}
        meta["zero_shot"] = z
        enc.close()
        h = meta["heldout"]
        free = ", ".join(f"{k} {v['runtime_top1']:.4f}" for k, v in z["prompt_sets"].items())
        log(f"  text encoder ({encoder.name}) on {runtime}: held-out cosine to eager {h['cosine_mean']:.6f} "
            f"(min {h['cosine_min']:.6f}, {h['within_max_tokens']}/{h['sentences']} within {max_tokens} tokens); "
            f"zero-shot top-1 with free-text prompts: {free}; stored class embeddings {z['class_embeddings_top1']:.4f}")
        write_json(path / "text_encoder.json", meta)
        return meta

    return run


def text_encoder_stages(recipe: Any, runner: Any, text_cfg: dict[str, Any], text_ckpt: Path | None,
                        text_student: Any, exported: dict[str, Any], text: Any, splits: Any, spec: dict[str, Any],
                        class_emb: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """{runtime: StageResult} of the `text-encoder-<runtime>` stages `clip.text_encoder_in_bundle` asks for."""
    c = recipe.clip
    if not c.text_encoder_in_bundle:
        return {}
    image_stages = {st.meta["runtime"]: st for st in exported.values() if st.meta["runtime"] != "coreml"
                    and (st.meta.get("info") or {}).get("input_form", "float-nchw") == "float-nchw"}
    if not image_stages:
        raise RecipeError("clip.text_encoder_in_bundle: measuring the text encoder needs a float onnx, litert or "
                          "executorch image target in export.targets")
    source = c.text_encoder_in_bundle
    cfg = {"source": source, "teacher": text_cfg, "max_tokens": c.text_encoder_max_tokens,
           "eval_sentences": c.text_encoder_eval_sentences, "seed": recipe.seed}
    out = {}
    for rt in c.text_encoder_targets:
        image = image_stages.get(rt) or next(iter(image_stages.values()))
        inputs = [text, image] + ([text_student] if source == "student" else [])
        out[rt] = runner.run(f"text-encoder-{rt}", cfg | {"runtime": rt}, inputs, text_encoder_stage_fn(
            recipe, rt, lambda: load_bundle_text_encoder(recipe, text_ckpt, text_student), image, splits, spec,
            class_emb, class_names, recipe.verify.threads))
    return out
