"""TinyCLIP manual weight inheritance: the right layers, the teacher's tensors (leading slices when narrower)."""

from __future__ import annotations

import pytest
import torch
from pocketvit.clip.inherit import evenly_spaced, inherit_text_encoder
from pocketvit.errors import RecipeError
from pocketvit.models.text import load_text_encoder


def test_evenly_spaced_keeps_first_and_last():
    assert evenly_spaced(6, 3) == [0, 3, 5]
    assert evenly_spaced(6, 2) == [0, 5]
    assert evenly_spaced(12, 4) == [0, 4, 7, 11]
    assert evenly_spaced(6, 6) == list(range(6))
    with pytest.raises(RecipeError, match="cannot keep 7 of 6"):
        evenly_spaced(6, 7)


def test_inherited_layers_are_the_teachers_tensors(tiny_text_folder):
    teacher = load_text_encoder(f"hf:{tiny_text_folder}")
    student, keep = inherit_text_encoder(teacher, layers=2)
    assert keep == [0, 3] and student.model.config.num_hidden_layers == 2
    t, s = teacher.model.state_dict(), student.model.state_dict()
    for i, src in enumerate(keep):
        for name in ("attention.self.query.weight", "attention.output.dense.bias", "intermediate.dense.weight",
                     "output.LayerNorm.weight"):
            assert torch.equal(s[f"encoder.layer.{i}.{name}"], t[f"encoder.layer.{src}.{name}"])
    assert torch.equal(s["embeddings.word_embeddings.weight"], t["embeddings.word_embeddings.weight"])
    # all layers kept = the teacher itself: identical embeddings
    full, _ = inherit_text_encoder(teacher, layers=4)
    sents = ["a photo of a dress.", "a dark sneaker on a black background."]
    assert torch.allclose(full.encode(sents), teacher.encode(sents), atol=1e-6)


def test_leading_heads_and_channels(tiny_text_folder):
    teacher = load_text_encoder(f"hf:{tiny_text_folder}")  # 4 heads of 8 -> keep 2 heads: width 16
    student, keep = inherit_text_encoder(teacher, layers=3, heads=2, intermediate=40)
    cfg = student.model.config
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (16, 2, 40) and keep == [0, 2, 3]
    t, s = teacher.model.state_dict(), student.model.state_dict()
    assert torch.equal(s["encoder.layer.1.attention.self.key.weight"], t["encoder.layer.2.attention.self.key.weight"][:16, :16])
    assert torch.equal(s["encoder.layer.2.intermediate.dense.weight"], t["encoder.layer.3.intermediate.dense.weight"][:40, :16])
    assert torch.equal(s["embeddings.word_embeddings.weight"], t["embeddings.word_embeddings.weight"][:, :16])
    assert student.encode(["a bag."]).shape == (1, 16)
    with pytest.raises(RecipeError, match="inherit.heads"):
        inherit_text_encoder(teacher, layers=2, heads=9)


def test_random_init_has_the_same_shape_but_not_the_weights(tiny_text_folder):
    teacher = load_text_encoder(f"hf:{tiny_text_folder}")
    rand, _ = inherit_text_encoder(teacher, layers=2, random_init=True)
    inh, _ = inherit_text_encoder(teacher, layers=2)
    r, i = rand.model.state_dict(), inh.model.state_dict()
    assert r.keys() == i.keys() and all(r[k].shape == i[k].shape for k in r)
    assert not torch.equal(r["encoder.layer.0.attention.self.query.weight"], i["encoder.layer.0.attention.self.query.weight"])


@pytest.mark.slow
def test_inherit_three_layers_from_real_minilm():
    teacher = load_text_encoder("minilm")
    student, keep = inherit_text_encoder(teacher, layers=3)
    assert keep == [0, 3, 5] and sum(p.numel() for p in student.model.parameters()) < 0.8 * sum(
        p.numel() for p in teacher.model.parameters())
    t, s = teacher.model.state_dict(), student.model.state_dict()
    assert torch.equal(s["encoder.layer.2.output.dense.weight"], t["encoder.layer.5.output.dense.weight"])
    sents = ["A sneaker is a sports shoe.", "Return the number of items in the queue."]
    cos = torch.nn.functional.cosine_similarity(student.encode(sents), teacher.encode(sents)).min()
    assert cos > 0.3  # inherited, not yet distilled: already related to the teacher's embeddings
