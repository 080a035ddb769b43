"""Several entry points in one file (early-exit segments): chained methods give the eager result."""

from __future__ import annotations

import numpy as np
import pytest
from export_testkit import eager, run_pte, run_tflite

torch = pytest.importorskip("torch")
nn = torch.nn


class Stem(nn.Module):
    """Segment 1 of TinyViT: tokens after the transformer block."""

    def __init__(self, vit):
        super().__init__()
        self.vit = vit

    def forward(self, x):
        v = self.vit
        x = v.patch(x).flatten(2).transpose(1, 2) + v.pos
        h = v.norm1(x)
        x = x + (v.attn(h, h, h, need_weights=False)[0] if v.mha else v.attn(h))
        return x + v.mlp(v.norm2(x))


class Head(nn.Module):
    """Segment 2 of TinyViT: norm, pool, classifier."""

    def __init__(self, vit):
        super().__init__()
        self.vit = vit

    def forward(self, tokens):
        return self.vit.head(self.vit.norm(tokens).mean(dim=1))


@pytest.fixture(scope="module")
def segments(tiny_models):
    vit, x = tiny_models["tiny_vit"]
    stem, head = Stem(vit).eval(), Head(vit).eval()
    with torch.no_grad():
        tokens = stem(x)
        assert torch.allclose(head(tokens), vit(x), atol=1e-6)
    return vit, x, stem, head, tokens


def test_executorch_methods_chain(segments, tmp_path):
    from pocketvit.export import export_executorch_methods

    vit, x, stem, head, tokens = segments
    path = tmp_path / "segments.pte"
    f = export_executorch_methods({"stem": (stem, (x,)), "head": (head, (tokens,))}, path, model_name="vit")
    assert f.path == path and path.is_file()
    assert f.info["methods"] == ["stem", "head"]
    assert set(f.info["per_method"]) == {"stem", "head"}
    assert f.info["delegate_calls"] == sum(m["delegate_calls"] for m in f.info["per_method"].values())

    mid = run_pte(path, x, method="stem")
    out = run_pte(path, torch.from_numpy(mid), method="head")
    ref = eager(vit, x)
    assert float(np.abs(out - ref).max()) < 1e-4
    assert out.argmax() == ref.argmax()


def test_litert_signatures_chain(segments, tmp_path):
    from pocketvit.export import export_litert_signatures

    vit, x, stem, head, tokens = segments
    path = tmp_path / "segments.tflite"
    f = export_litert_signatures({"stem": (stem, (x,)), "head": (head, (tokens,))}, path)
    assert set(f.info["signatures"]) == {"stem", "head"}

    mid = run_tflite(path, x, signature="stem")
    out = run_tflite(path, torch.from_numpy(mid), signature="head")
    ref = eager(vit, x)
    assert float(np.abs(out - ref).max()) < 1e-4
    assert out.argmax() == ref.argmax()
