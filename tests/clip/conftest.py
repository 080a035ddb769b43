"""Tiny, locally created encoders for the CLIP tests: a 4-layer BERT text encoder (sentence-transformers folder)
and an untrained small ResNet checkpoint as the image teacher. No hub, seconds to make."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tiny_text_folder(folder: Path, layers: int = 4, hidden: int = 32, heads: int = 4) -> Path:
    """A BERT of `layers` x `hidden` with a vocabulary of the caption words, saved as safetensors + tokenizer
    + sentence-transformers pooling config (mean, normalised)."""
    import torch
    from pocketvit.clip.corpus import all_captions
    from pocketvit.clip.text_distill import save_text_encoder
    from pocketvit.models.text import TransformerTextEncoder
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = sorted({w.strip(".,").lower() for c in all_captions() for w in c.replace("-", " - ").split()})
    folder.mkdir(parents=True, exist_ok=True)
    vocab = list(dict.fromkeys(SPECIAL + [w for w in words if w] + [".", ",", "-"]))  # one line per token: id = line
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab=str(folder / "vocab.txt"))  # transformers 5 ignores vocab_file= (all [UNK])
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=2 * hidden, max_position_embeddings=64,
                     initializer_range=0.5)  # wide init: sentences get distinct embeddings
    assert tok.tokenize("a photo of a trouser.").count("[UNK]") == 0, "tiny tokenizer lost its vocabulary"
    save_text_encoder(TransformerTextEncoder(BertModel(cfg).eval(), tok, "mean", 32), folder)
    return folder


@pytest.fixture(scope="session")
def tiny_text_folder(tmp_path_factory) -> Path:
    return make_tiny_text_folder(tmp_path_factory.mktemp("tiny-text") / "encoder")


TINY_RESNET = {"widths": [8, 16, 16], "depths": [1, 1, 1]}


@pytest.fixture(scope="session")
def tiny_resnet_ckpt(tmp_path_factory) -> Path:
    import torch
    from pocketvit.models import build_model
    from safetensors.torch import save_file

    torch.manual_seed(0)
    m = build_model("pocketvit-resnet", 1, 10, 28, TINY_RESNET)
    path = tmp_path_factory.mktemp("tiny-resnet") / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    return path


TINY_OPEN_CLIP = {"embed_dim": 16,
                  "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
                  "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="session")
def tiny_open_clip(tmp_path_factory) -> tuple[str, Path]:
    """('pv-tiny-clip', its random weights as safetensors): an open_clip model registered from a local config."""
    import json

    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny-open-clip")
    (folder / "pv-tiny-clip.json").write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(folder / "pv-tiny-clip.json")
    torch.manual_seed(0)
    model = open_clip.create_model("pv-tiny-clip").eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "tiny.safetensors"))
    return "pv-tiny-clip", folder / "tiny.safetensors"


TINY_CLIP = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-clip.yaml"


def tiny_clip_sets(text_folder: Path, resnet_ckpt: Path) -> list[str]:
    """--set values that point the tiny CLIP recipe at the tiny local encoders."""
    return [f"clip.text_teacher=hf:{text_folder}", f"clip.image_teachers=[{resnet_ckpt}, {resnet_ckpt}]"]


@pytest.fixture(scope="session")
def clip_build(tmp_path_factory, tiny_text_folder, tiny_resnet_ckpt, fmnist_root):
    """(build dir, report) of the tiny CLIP recipe (ONNX only); tests that change it work on a copy."""
    from pocketvit.pipeline.classify import run_build
    from pocketvit.recipe import load_recipe

    out = tmp_path_factory.mktemp("tiny-clip-build")
    report = run_build(load_recipe(TINY_CLIP, tiny_clip_sets(tiny_text_folder, tiny_resnet_ckpt)), TINY_CLIP, out)
    return out, report


def with_distinct_text_embeddings(bundle: Path, dst: Path) -> Path:
    """A copy of the bundle with seeded random class embeddings: the tiny random text encoder's class prompt
    embeddings are nearly parallel (cosine up to 0.99), so top-1 margins are tiny and rounding could pick the class;
    random rows give clear margins, as a user's own class embeddings would."""
    import json
    import shutil

    import numpy as np
    from pocketvit.runtime import write_manifest

    shutil.copytree(bundle, dst)
    m = json.loads((dst / "manifest.json").read_text())
    t = np.random.default_rng(0).standard_normal(np.load(dst / m["text_embeddings"]).shape).astype(np.float32)
    np.save(dst / m["text_embeddings"], t / np.linalg.norm(t, axis=1, keepdims=True))
    m.pop("text_embeddings_sha256")
    write_manifest(dst, m)
    return dst
