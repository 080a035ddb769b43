"""Shared preparation: copy, eval, re-parameterisation, non-fused attention, BatchNorm re-estimation."""

from __future__ import annotations

import pytest
from pocketvit.export.prepare import (
    fused_attn_disabled,
    prepare_for_export,
    prepare_many,
    recalibrate_batchnorm,
    reparameterize,
    unfuse_attention,
)

torch = pytest.importorskip("torch")
nn = torch.nn


class RepBlock(nn.Module):
    """Two parallel convs at train time, one at deploy time (RepVGG style)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 2, 3, padding=1)
        self.b = nn.Conv2d(2, 2, 3, padding=1)
        self.fused = None

    def reparameterize(self):
        fused = nn.Conv2d(2, 2, 3, padding=1)
        fused.weight.data = self.a.weight.data + self.b.weight.data
        fused.bias.data = self.a.bias.data + self.b.bias.data
        self.fused = fused
        del self.a, self.b

    def forward(self, x):
        if self.fused is not None:
            return self.fused(x)
        return self.a(x) + self.b(x)


class FakeTimmAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.fused_attn = True

    def forward(self, x):
        return x


def test_prepare_copies_evals_and_reparameterizes():
    model = nn.Sequential(RepBlock(), nn.Dropout(0.5)).train()
    x = torch.randn(1, 2, 5, 5)
    with torch.no_grad():
        ref = nn.Sequential(*list(model)).eval()(x)
    prepared = prepare_for_export(model)
    assert prepared is not model
    assert model.training and hasattr(model[0], "a")  # caller's model untouched
    assert not prepared.training and prepared[0].fused is not None and not hasattr(prepared[0], "a")
    with torch.no_grad():
        assert torch.allclose(prepared(x), ref, atol=1e-6)


def test_reparameterize_root_and_fuse_replacement():
    class Fusable(nn.Module):
        def fuse(self):
            return nn.Identity()

    parent = nn.Sequential(nn.ReLU(), Fusable())
    out = reparameterize(parent)
    assert isinstance(out[1], nn.Identity)
    root = RepBlock()
    reparameterize(root)
    assert root.fused is not None


def test_unfuse_attention_and_context():
    model = nn.Sequential(FakeTimmAttention(), FakeTimmAttention())
    prepared = prepare_for_export(model, unfused_attention=True)
    assert [m.fused_attn for m in prepared] == [False, False]
    assert [m.fused_attn for m in model] == [True, True]
    assert unfuse_attention(prepared) == 0

    timm_config = pytest.importorskip("timm.layers.config")
    before = timm_config._USE_FUSED_ATTN
    with fused_attn_disabled():
        assert not timm_config.use_fused_attn()
    assert timm_config._USE_FUSED_ATTN == before


def test_prepare_many_keeps_shared_weights_shared():
    shared = nn.Linear(3, 3)
    a, b = nn.Sequential(shared, nn.ReLU()), nn.Sequential(shared)
    pa, pb = prepare_many([a, b])
    assert pa[0] is pb[0] and pa[0] is not shared


def test_recalibrate_batchnorm_restores_flags_and_fixes_stats():
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.1)]
    for _ in range(10):
        layers += [nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()]
    model = nn.Sequential(*layers).eval()
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.02)  # shrinks activations layer by layer
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        before = model(x).std().item()
    out = recalibrate_batchnorm(model, (4, 3, 16, 16), batches=3)
    assert out is model
    assert not any(m.training for m in model.modules())
    bn = model[1]
    assert bn.momentum == 0.1 and int(bn.num_batches_tracked) == 3
    with torch.no_grad():
        after = model(x).std().item()
    assert before < 1e-3 < 0.1 < after

    model.train()
    recalibrate_batchnorm(model, (2, 3, 16, 16), batches=1)
    assert all(m.training for m in model.modules())

    with pytest.raises(ValueError, match="batch of 2"):
        recalibrate_batchnorm(model, (1, 3, 16, 16))
