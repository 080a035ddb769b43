"""Text teachers: Hugging Face / sentence-transformers folders (pooling from their config) and open_clip models
with a safetensors checkpoint — real loading code, tiny weights created here."""

from __future__ import annotations

import json

import pytest
import torch
from pocketvit.errors import RecipeError
from pocketvit.models.text import load_text_encoder, sentence_transformers_pooling

SENTS = ["a photo of a dress.", "a dark sneaker on a black background.", "a bag."]


def test_hf_folder_loads_with_its_pooling_and_normalises(tiny_text_folder):
    enc = load_text_encoder(f"hf:{tiny_text_folder}")
    assert enc.pooling == "mean" and enc.dim == 32
    e = enc.encode(SENTS)
    assert e.shape == (3, 32) and torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    # by hand: transformers forward, mean over real tokens, L2 norm
    tok = enc.tokenizer(SENTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = enc.model(**tok).last_hidden_state
    m = tok["attention_mask"][..., None].float()
    ref = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    assert torch.allclose(e, ref, atol=1e-5)


def test_pooling_mode_comes_from_the_sentence_transformers_config(tiny_text_folder, tmp_path):
    import shutil

    folder = tmp_path / "cls"
    shutil.copytree(tiny_text_folder, folder)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert sentence_transformers_pooling(folder) == ("cls", True)
    enc = load_text_encoder(f"hf:{folder}")
    tok = enc.tokenizer(SENTS[:1], return_tensors="pt")
    with torch.no_grad():
        cls = enc.model(**tok).last_hidden_state[:, 0]
    assert torch.allclose(enc.encode(SENTS[:1]), torch.nn.functional.normalize(cls, dim=-1), atol=1e-5)
    (folder / "modules.json").unlink()  # a plain transformers folder: mean pooling
    assert sentence_transformers_pooling(folder) == ("mean", True)


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(RecipeError, match="no config.json"):
        load_text_encoder(f"hf:{tmp_path}")
    with pytest.raises(RecipeError, match="unknown text encoder 'bert'"):
        load_text_encoder("bert")
    with pytest.raises(RecipeError, match="unknown open_clip model"):
        load_text_encoder("open_clip:NoSuchModel-Z")


def test_open_clip_teacher_from_a_safetensors_checkpoint(tiny_open_clip, tmp_path):
    import open_clip
    from safetensors.torch import load_file

    arch, ckpt = tiny_open_clip
    ref = open_clip.create_model(arch).eval()
    ref.load_state_dict(load_file(str(ckpt)))
    enc = load_text_encoder(f"open_clip:{arch}", ckpt)
    tok = open_clip.get_tokenizer(arch)
    with torch.no_grad():
        expected = ref.encode_text(tok(SENTS), normalize=True)
        img = torch.randn(2, 3, 32, 32)
        expected_img = ref.encode_image(img, normalize=True)
    assert torch.allclose(enc.encode(SENTS), expected, atol=1e-5)
    assert torch.allclose(enc.encode_image(img), expected_img, atol=1e-5)
    assert enc.dim == 16 and enc.preprocess["size"] == [32, 32] and len(enc.preprocess["mean"]) == 3
    with pytest.raises(RecipeError, match="must be a .safetensors file"):
        load_text_encoder(f"open_clip:{arch}", tmp_path / "tiny.pt")


@pytest.mark.slow
def test_minilm_matches_sentence_transformers():
    from pocketvit.models.text import minilm_path
    from sentence_transformers import SentenceTransformer

    enc = load_text_encoder("minilm")
    assert (enc.pooling, enc.dim, enc.max_length) == ("mean", 384, 256)
    ref = SentenceTransformer(str(minilm_path()), device="cpu").encode(SENTS, convert_to_tensor=True)
    assert torch.allclose(enc.encode(SENTS), ref.cpu(), atol=1e-5)
