"""A text encoder inside the zero-shot bundle (`clip.text_encoder_in_bundle`), so the device embeds typed prompts.

The `text-encoder-<runtime>` stage (pipeline/stages/clip_text.py): the text teacher (or the TinyCLIP text student) exported as a model file taking
``input_ids`` and ``attention_mask`` [1, max_tokens] and returning the token states, its WordPiece vocabulary
written beside it; then measured on that runtime through pocketvit.runtime's torch-free tokenizer + pooling:
cosine to the eager encoder on held-out sentences, and zero-shot top-1 on the test split with free-text prompts
("a photo of a trouser") embedded on the runtime, next to the stored class embeddings, both scored against the
image embeddings of the exported image model on its runtime.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pocketvit.errors import RecipeError

MODEL_NAMES = {"onnx": "text_encoder.onnx", "litert": "text_encoder.tflite", "executorch": "text_encoder.pte"}
VOCAB = "text_vocab.txt"
STUDENT_NAME = "TinyCLIP text student"
# free-text prompts measured against the stored class embeddings: a plain template, and (Fashion-MNIST) wordings
# that appear in no caption, prompt template or class name the build used
PARAPHRASES = {"t-shirt": "a plain cotton tee", "trouser": "a pair of blue jeans", "pullover": "a warm knitted jumper",
               "dress": "an elegant evening gown", "coat": "a heavy winter jacket", "sandal": "a beach flip-flop",
               "shirt": "a formal button-down shirt", "sneaker": "a running shoe", "bag": "a leather purse",
               "ankle boot": "a short leather boot"}


def free_text_prompts(class_names: list[str]) -> dict[str, list[str]]:
    """{prompt set: one prompt per class}."""
    from pocketvit.clip.corpus import article

    sets = {"a photo of": [f"a photo of {article(n)}" for n in class_names]}
    if all(n in PARAPHRASES for n in class_names):
        sets["paraphrases"] = [PARAPHRASES[n] for n in class_names]
    return sets


class TokenStates(nn.Module):
    """(input_ids, attention_mask) -> last hidden state: what the bundle's text encoder file computes."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def tokenizer_options(tokenizer: Any, where: str) -> tuple[list[str], dict[str, Any]]:
    """(vocabulary in id order, the normaliser's options) of a BERT WordPiece fast tokenizer, or a clear error."""
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is None:
        raise RecipeError(f"{where}: the text encoder's tokenizer is not a Hugging Face fast tokenizer; a bundle "
                          "can carry BERT WordPiece text encoders only (minilm, hf:folder of a BERT model)")
    spec = json.loads(backend.to_str())
    model, norm = spec.get("model") or {}, spec.get("normalizer") or {}
    if model.get("type") != "WordPiece" or norm.get("type") != "BertNormalizer":
        raise RecipeError(f"{where}: the tokenizer is {model.get('type')} with {norm.get('type')}; a bundle can carry "
                          "BERT WordPiece text encoders only (minilm, hf:folder of a BERT model), not open_clip's BPE")
    vocab = model["vocab"]
    ids = sorted(vocab.values())
    if ids != list(range(len(ids))):
        raise RecipeError(f"{where}: the tokenizer's vocabulary ids are not 0..{len(ids) - 1}")
    by_id = sorted(vocab, key=vocab.__getitem__)
    return by_id, {"lower_case": bool(norm.get("lowercase", True)), "strip_accents": norm.get("strip_accents"),
                   "chinese_chars": bool(norm.get("handle_chinese_chars", True))}


def export_text_model(encoder: Any, runtime: str, path: Path, max_tokens: int, name: str) -> Any:
    """The encoder's transformer as a model file for `runtime`, static shapes [1, max_tokens]."""
    from pocketvit.export.executorch import export_executorch
    from pocketvit.export.litert import export_litert
    from pocketvit.export.onnx import export_onnx

    model = TokenStates(encoder.model).cpu().eval()
    example = (torch.ones(1, max_tokens, dtype=torch.long), torch.ones(1, max_tokens, dtype=torch.long))
    fn = {"onnx": export_onnx, "litert": export_litert, "executorch": export_executorch}[runtime]
    # onnxscript's constant folding logs a harmless "Evaluation failed" warning on BERT's attention mask
    quiet = logging.getLogger("onnxscript")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return fn(model, example, path, model_name=name, prepare=False)
    finally:
        quiet.setLevel(level)


def load_bundle_text_encoder(recipe: Any, text_ckpt: Path | None, text_student: Any) -> Any:
    """The encoder `clip.text_encoder_in_bundle` names: the text teacher, or the text-student stage's student."""
    from pocketvit.models.text import load_hf_text_encoder, load_text_encoder

    if recipe.clip.text_encoder_in_bundle == "student":
        if text_student is None:
            raise RecipeError("clip.text_encoder_in_bundle: 'student' needs clip.text_student (the TinyCLIP text "
                              "student stage); set it, or use 'teacher'")
        return load_hf_text_encoder(Path(text_student.path) / "student", name=STUDENT_NAME)
    return load_text_encoder(recipe.clip.text_teacher, text_ckpt)


def check_text_encoder_option(recipe: Any) -> None:
    """Fail before training when the recipe asks for a text encoder the bundle cannot carry."""
    c = recipe.clip
    if not c.text_encoder_in_bundle:
        return
    if c.text_teacher.startswith("open_clip:"):
        raise RecipeError("clip.text_encoder_in_bundle: open_clip text towers (BPE tokenizer) cannot go into a "
                          "bundle yet; use a BERT text teacher (minilm, hf:folder) or leave it null")
    if c.text_encoder_in_bundle == "student" and c.text_student is None:
        raise RecipeError("clip.text_encoder_in_bundle: 'student' needs clip.text_student; set it, or use 'teacher'")


def runtime_text_encoder(model_file: Path, runtime: str, vocab_file: Path, tok: dict[str, Any], max_tokens: int,
                         dim: int, pooling: str, threads: int | None) -> Any:
    """pocketvit.runtime's TextEncoder on a file of a stage (the bundle is not written yet)."""
    from pocketvit.runtime import open_backend
    from pocketvit.runtime.text import TextEncoder
    from pocketvit.runtime.tokenizer import WordPieceTokenizer

    tokenizer = WordPieceTokenizer.from_vocab_file(vocab_file, max_length=max_tokens, **tok)
    return TextEncoder(open_backend(runtime, str(model_file), num_threads=threads), tokenizer, dim=dim,
                       pooling=pooling)


def bundle_text_encoder_entry(bundle: Path, stages: dict[str, Any]) -> dict[str, Any] | None:
    """Place the text-encoder stages' files in the bundle (removing those a previous build left and this one
    does not list); returns the manifest's text_encoder block."""
    keep = {st.meta["file"] for st in stages.values()} | ({VOCAB} if stages else set())
    for stale in set(MODEL_NAMES.values()) | {VOCAB}:
        if stale not in keep and (bundle / stale).is_file():
            (bundle / stale).unlink()
    if not stages:
        return None
    from pocketvit.export.bundle import place
    from pocketvit.runtime import sha256_file

    first = next(iter(stages.values()))
    place(first.path / VOCAB, bundle / VOCAB)
    files = {}
    for rt, st in stages.items():
        place(st.path / st.meta["file"], bundle / st.meta["file"])
        files[rt] = {"path": st.meta["file"], "sha256": sha256_file(bundle / st.meta["file"]),
                     "bytes": (bundle / st.meta["file"]).stat().st_size, "runtime": rt, "precision": "fp32"}
    m = first.meta
    return {"source": m["source"], "dim": m["dim"], "max_tokens": m["max_tokens"], "pooling": m["pooling"],
            "normalize": True,
            "tokenizer": {"type": "wordpiece", "path": VOCAB, "sha256": sha256_file(bundle / VOCAB),
                          "bytes": (bundle / VOCAB).stat().st_size, **m["tokenizer"]},
            "files": files}


def text_encoder_markdown(report: dict[str, Any], table: Callable[[list[list[str]]], str]) -> list[str]:
    """report.md lines for the bundle's text encoder (nothing without one)."""
    te = report.get("text_encoder") or {}
    if not te:
        return []
    first = next(iter(te.values()))
    sets = list(first["zero_shot"]["prompt_sets"])
    rows = [["runtime", "source", "held-out cosine to eager (mean / min)",
             *[f"zero-shot top-1: \"{s}\" prompts" for s in sets], "stored class embeddings"]]
    for rt, m in te.items():
        h, z = m["heldout"], m["zero_shot"]
        rows.append([rt, m["source"], f"{h['cosine_mean']:.6f} / {h['cosine_min']:.6f}",
                     *[f"{z['prompt_sets'][s]['runtime_top1']:.4f}" for s in sets], f"{z['class_embeddings_top1']:.4f}"])
    z, h = first["zero_shot"], first["heldout"]
    examples = "; ".join(f"{s}: \"{z['prompt_sets'][s]['prompts'][1]}\"" for s in sets)
    return ["## Text encoder in the bundle (typed prompts)", "", table(rows), "",
            (f"One free-text prompt per class ({examples}, ...) embedded on the runtime (pocketvit.runtime tokenizer, "
             f"{first['max_tokens']} tokens), scored against image embeddings from the exported image model on "
             f"{z['image_runtime']} over {z['images']} test images; held-out cosine over {h['sentences']} sentences "
             f"({h['within_max_tokens']} fit in {first['max_tokens']} tokens; longer ones are cut on the device)."), ""]
