"""The text encoder a zero-shot bundle may carry, run on the device without torch: typed prompts in,
L2-normalised sentence embeddings out (WordPiece tokenizer in numpy, the transformer on a runtime,
then pooling and normalisation as sentence-transformers does).

Manifest block (written by `pocketvit build` with ``clip.text_encoder_in_bundle``)::

    "text_encoder": {"source": "minilm", "dim": 384, "max_tokens": 32, "pooling": "mean", "normalize": true,
                     "tokenizer": {"type": "wordpiece", "path": "text_vocab.txt", "sha256": ..., "bytes": ...,
                                   "lower_case": true, "strip_accents": null, "chinese_chars": true},
                     "files": {"onnx": {"path": "text_encoder.onnx", "sha256": ..., "bytes": ..., "runtime": "onnx"}}}

Each model file takes ``input_ids`` and ``attention_mask`` (int, [1, max_tokens]) and returns the token
states [1, max_tokens, dim]. Every file is sha256-checked before it is used, like the image model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from pocketvit.errors import BundleError
from pocketvit.runtime.targets import TEXT_RUNTIMES

from .backends import open_backend
from .tokenizer import WordPieceTokenizer

POOLINGS = ("mean", "cls", "max")
FREE_TEXT_HINT = ("for free-text prompts, rebuild with `clip.text_encoder_in_bundle: teacher` (or `student`) in the "
                  "recipe, or `--set clip.text_encoder_in_bundle=teacher`, so the bundle carries its text encoder")


def _check(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise BundleError(f"{where}: text_encoder: {msg}; rebuild the bundle")


def _check_file(e: Any, where: str, what: str) -> None:
    _check(isinstance(e, dict) and isinstance(e.get("path"), str), where, f"{what} needs a 'path'")
    sha = e.get("sha256")
    _check(isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha) is not None, where,
           f"{what} needs a 64-character lower-case hex 'sha256'")


def validate_text_encoder(te: Any, where: str) -> None:
    """Structure of the manifest's text_encoder block (not the files)."""
    _check(isinstance(te, dict), where, "must be an object")
    _check(isinstance(te.get("dim"), int) and te["dim"] > 0, where, "'dim' must be a positive integer")
    _check(isinstance(te.get("max_tokens"), int) and te["max_tokens"] >= 3, where, "'max_tokens' must be >= 3")
    _check(te.get("pooling", "mean") in POOLINGS, where, f"'pooling' must be one of {', '.join(POOLINGS)}")
    tok = te.get("tokenizer")
    _check_file(tok, where, "tokenizer")
    _check(tok.get("type") == "wordpiece", where, f"tokenizer type {tok.get('type')!r} is not 'wordpiece'")
    files = te.get("files")
    _check(isinstance(files, dict) and files, where, "'files' must list at least one model file")
    for rt, e in files.items():
        _check(rt in TEXT_RUNTIMES, where, f"runtime {rt!r} is not one of {', '.join(TEXT_RUNTIMES)}")
        _check_file(e, where, f"files[{rt!r}]")


def text_encoder_entries(m: dict) -> list[tuple[str, str, int | None]]:
    """(what, relative path, bytes) of every file the text_encoder block lists (presence and size checks)."""
    te = m.get("text_encoder")
    if not te:
        return []
    out = [("text_encoder.tokenizer", te["tokenizer"]["path"], te["tokenizer"].get("bytes"))]
    return out + [(f"text_encoder.files[{rt!r}]", e["path"], e.get("bytes")) for rt, e in te["files"].items()]


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str = "mean") -> np.ndarray:
    """Token states [N, T, D] + attention mask [N, T] -> [N, D], as sentence-transformers' Pooling does."""
    hidden = np.asarray(hidden, dtype=np.float32)
    m = np.asarray(mask, dtype=np.float32)[..., None]
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return np.where(m > 0, hidden, np.finfo(np.float32).min).max(1)
    return (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)


class TextEncoder:
    """``TextEncoder.from_bundle(bundle).encode(["a red dress"])`` -> [1, dim] float32, L2-normalised."""

    def __init__(self, backend: Any, tokenizer: WordPieceTokenizer, *, dim: int, pooling: str = "mean",
                 normalize: bool = True, source: str = "text"):
        self.backend, self.tokenizer = backend, tokenizer
        self.dim, self.pooling, self.normalize, self.source = dim, pooling, normalize, source
        self.runtime = backend.runtime

    @classmethod
    def from_bundle(cls, bundle: Any, runtime: str | None = None, num_threads: int | None = None) -> TextEncoder:
        """The bundle's text encoder on ``runtime`` (None or one the bundle lacks: onnx, litert, executorch,
        in that order among those the bundle has)."""
        te = bundle.manifest.get("text_encoder")
        if not te:
            raise BundleError(f"{bundle.source}: this bundle carries no text encoder; {FREE_TEXT_HINT}")
        files = te["files"]
        rt = runtime if runtime in files else next(r for r in TEXT_RUNTIMES if r in files)
        tok = te["tokenizer"]
        vocab = bundle.verified_path(tok["path"], tok["sha256"])
        model = bundle.verified_path(files[rt]["path"], files[rt]["sha256"])
        tokenizer = WordPieceTokenizer.from_vocab_file(
            vocab, lower_case=tok.get("lower_case", True), strip_accents=tok.get("strip_accents"),
            chinese_chars=tok.get("chinese_chars", True), max_length=te["max_tokens"])
        backend = open_backend(rt, model, num_threads=num_threads)
        return cls(backend, tokenizer, dim=te["dim"], pooling=te.get("pooling", "mean"),
                   normalize=te.get("normalize", True), source=te.get("source", "text"))

    def encode(self, sentences: Sequence[str]) -> np.ndarray:
        """[N, dim] float32 sentence embeddings (L2-normalised unless the manifest says otherwise)."""
        sentences = list(sentences)
        if not sentences:
            return np.zeros((0, self.dim), np.float32)
        ids, mask = self.tokenizer(sentences)
        rows = []
        for i in range(len(sentences)):  # the files are exported for one sentence at a time
            hidden = self.backend.run_method("forward", [ids[i : i + 1], mask[i : i + 1]])[0]
            rows.append(pool(np.asarray(hidden).reshape(1, ids.shape[1], -1), mask[i : i + 1], self.pooling))
        emb = np.concatenate(rows).astype(np.float32)
        if emb.shape[1] != self.dim:
            raise BundleError(f"{self.backend.path}: the text encoder outputs {emb.shape[1]} values per token, the "
                              f"manifest says dim {self.dim}; rebuild the bundle")
        if self.normalize:
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return emb

    def close(self) -> None:
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

