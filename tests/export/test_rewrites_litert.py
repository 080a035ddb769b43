"""LiteRT rewrites: same outputs, and a real litert-torch conversion with fewer ops than without them."""

from __future__ import annotations

import numpy as np
import pytest
from export_testkit import eager, run_tflite
from pocketvit.export.rewrites import apply_rewrites

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
pytest.importorskip("litert_torch")


def convnext_like():
    """A timm LayerNorm2d stem norm, then a ConvNeXt-style block: depthwise conv, permute, LayerNorm, MLP."""
    from timm.layers import LayerNorm, LayerNorm2d
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c: int = 16):
            super().__init__()
            self.stem, self.norm0 = nn.Conv2d(3, c, 4, stride=4), LayerNorm2d(c)
            self.dw, self.norm = nn.Conv2d(c, c, 7, padding=3, groups=c), LayerNorm(c)
            self.fc1, self.fc2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

        def forward(self, x):
            x = self.norm0(self.stem(x))
            y = self.norm(self.dw(x).permute(0, 2, 3, 1))
            return x + self.fc2(torch.nn.functional.gelu(self.fc1(y))).permute(0, 3, 1, 2)

    torch.manual_seed(0)
    model = Block().eval()
    with torch.no_grad():  # non-trivial affine parameters
        for ln in (model.norm0, model.norm):
            ln.weight.normal_(1.0, 0.3)
            ln.bias.normal_(0.0, 0.3)
    return model, torch.randn(1, 3, 32, 32)


def test_layernorm_keepdim_keeps_outputs_and_drops_reshapes(tmp_path):
    from pocketvit.export.litert import export_litert
    from pocketvit.export.prepare import prepare_for_export

    model, x = convnext_like()
    ref = eager(model, x)
    rewritten = prepare_for_export(model)
    assert apply_rewrites(rewritten, "litert") == {"layernorm-keepdim": 2}
    assert apply_rewrites(prepare_for_export(model), "executorch").get("layernorm-keepdim") is None
    np.testing.assert_allclose(eager(rewritten, x), ref, atol=1e-5)

    f = export_litert(model, x, tmp_path / "m.tflite", compare_rewrites=True)
    after, before = f.info, f.info["before_rewrites"]
    assert after["rewrites"] == {"layernorm-keepdim": 2}
    assert after["ops"].get("RESHAPE", 0) < before["ops"].get("RESHAPE", 0)
    assert sum(after["ops"].values()) < sum(before["ops"].values())
    assert "SQUARED_DIFFERENCE" in before["ops"] and "SQUARED_DIFFERENCE" not in after["ops"]
    assert after["ops_outside"] == 0 and after["delegate_calls"] == 1
    got = run_tflite(f.path, x)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert (got.reshape(len(got), -1).argmax(1) == ref.reshape(len(ref), -1).argmax(1)).all()


def test_no_rewrite_all_converts_the_plain_model(tmp_path):
    from pocketvit.export.litert import export_litert

    model, x = convnext_like()
    f = export_litert(model, x, tmp_path / "m.tflite", disabled_rewrites=("all",), compare_rewrites=True)
    assert f.info["rewrites"] == {} and "before_rewrites" not in f.info
