"""EarlyExitModel: the student's own numerics and keys, segments that chain to the same outputs, LGViT
training stages."""

from __future__ import annotations

import torch
from pocketvit.exits.model import EarlyExitModel, segment_examples
from pocketvit.exits.train import default_weights, stage1_loss, stage2_loss
from pocketvit.models import build_model


def _chain(model, x):
    outs, state = [], x
    for seg in model.segments():
        o = seg(state)
        if isinstance(o, tuple):
            state, logits = o
            outs.append(logits)
        else:
            outs.append(o)
    return outs


def test_tinyvit_exits_keep_the_students_outputs_and_keys():
    torch.manual_seed(0)
    student = build_model("pocketvit-tinyvit", 1, 10, 28, {"dims": [16, 24], "depths": [2, 2], "heads": [1, 2]})
    keys = set(student.state_dict())
    model = EarlyExitModel(student, [1, 3], "auto", 10).eval()
    assert model.head_kinds == ["local", "global"]
    assert set(model.student().state_dict()) == keys  # the student's own keys, unchanged
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        outs = model(x)
        assert len(outs) == 3 and all(o.shape == (3, 10) for o in outs)
        assert torch.equal(outs[-1], student(x))
        for a, b in zip(_chain(model, x), outs):
            torch.testing.assert_close(a, b)
    assert all(a[0].is_contiguous() for a in segment_examples(model, x[:1]))


def test_timm_vit_exits():
    torch.manual_seed(0)
    vit = build_model("timm:vit_tiny_patch16_224", 1, 10, 28,
                      {"img_size": 28, "patch_size": 7, "depth": 3, "embed_dim": 32, "num_heads": 2})
    model = EarlyExitModel(vit, [1, 2], ["local", "global"], 10).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        outs = model(x)
        torch.testing.assert_close(outs[-1], vit(x))
        for a, b in zip(_chain(model, x), outs):
            torch.testing.assert_close(a, b)


def test_bad_exit_positions_are_refused_clearly():
    import pytest
    from pocketvit.errors import RecipeError

    student = build_model("pocketvit-tinyvit", 1, 10, 28, {"dims": [16], "depths": [2], "heads": [1]})
    for bad in ([2], [0], [1, 1]):
        with pytest.raises(RecipeError, match="after_blocks"):
            EarlyExitModel(student, bad, "auto", 10)


def test_stage2_freezes_the_backbone_and_its_batchnorm():
    torch.manual_seed(0)
    student = build_model("pocketvit-tinyvit", 1, 10, 28, {"dims": [16], "depths": [3], "heads": [1]})
    model = EarlyExitModel(student, [1, 2], "auto", 10)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    model.train()
    loss = stage1_loss(default_weights(2))(model(x), y)
    loss.backward()
    assert student.head.weight.grad is not None
    model.zero_grad(set_to_none=True)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    model.freeze_backbone()
    model.train()
    assert not model.backbone.training and model.heads.training
    loss = stage2_loss(0.3, 2.0)(model(x), y)
    loss.backward()
    assert student.head.weight.grad is None and model.heads[0].fc.weight.grad is not None
    after = student.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm running stats untouched
