"""Core ML rewrites (export/rewrites_coreml.py): coremltools 9.0 converts no aten.addcmul; timm's GlobalResponseNorm
(ConvNeXtV2) and ResMLP's Affine use it. A small net with both, converted for real."""

from __future__ import annotations

import numpy as np
import pytest
from export_testkit import eager

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
pytest.importorskip("coremltools")


def convnextv2_like():
    """A stem, a ConvNeXtV2-style MLP (channels-last: linear, GRN, linear), ResMLP's Affine, pooling, a head."""
    from timm.layers.grn import GlobalResponseNorm
    from timm.models.mlp_mixer import Affine
    from torch import nn

    class Net(nn.Module):
        def __init__(self, c: int = 8):
            super().__init__()
            self.stem, self.fc1, self.grn = nn.Conv2d(3, c, 4, stride=4), nn.Linear(c, 2 * c), GlobalResponseNorm(2 * c)
            self.fc2, self.affine, self.head = nn.Linear(2 * c, c), Affine(c), nn.Linear(c, 4)

        def forward(self, x):
            x = self.stem(x).permute(0, 2, 3, 1)
            x = x + self.fc2(self.grn(torch.nn.functional.gelu(self.fc1(x))))
            return self.head(self.affine(x.flatten(1, 2)).mean(1))

    torch.manual_seed(0)
    model = Net().eval()
    with torch.no_grad():  # GRN and Affine start as the identity; make them do something
        for p in (model.grn.weight, model.grn.bias, model.affine.alpha, model.affine.beta):
            p.normal_(0.5, 0.3)
    return model, torch.randn(1, 3, 32, 32)


def test_addcmul_as_mul_add_makes_core_ml_convert(tmp_path):
    from pocketvit.errors import ExportError
    from pocketvit.export.coreml import export_coreml
    from pocketvit.export.known_issues import known_issue
    from pocketvit.export.prepare import prepare_for_export
    from pocketvit.export.rewrites import apply_rewrites

    model, x = convnextv2_like()
    with pytest.raises(ExportError) as ei:  # the toolchain's failure, reproduced with the rewrite off
        export_coreml(model, x, tmp_path / "raw.mlpackage", disabled_rewrites=("addcmul-as-mul-add",))
    assert "addcmul" in str(ei.value) and known_issue("coreml", str(ei.value)).toolchain == "coremltools 9.0"
    assert not (tmp_path / "raw.mlpackage").exists()
    f = export_coreml(model, x, tmp_path / "m.mlpackage")
    assert f.info["rewrites"] == {"addcmul-as-mul-add": 2} and f.info["spec_check"]["ok"]
    rewritten = prepare_for_export(model)
    assert apply_rewrites(rewritten, "coreml") == {"addcmul-as-mul-add": 2}
    assert "addcmul-as-mul-add" not in apply_rewrites(prepare_for_export(model), "executorch")  # Core ML's gap only
    for inputs in (x, torch.randn(2, 3, 32, 32)):  # a multiply and an add: what addcmul computes
        np.testing.assert_allclose(eager(rewritten, inputs), eager(model, inputs), rtol=1e-6, atol=1e-6)


def test_core_ml_int8_and_dropin_take_the_rewrite_too(tmp_path):
    from pocketvit.export.coreml_image import export_coreml_image
    from pocketvit.export.quantize import config_for, quantize_export

    model, x = convnextv2_like()
    spec = {"height": 32, "width": 32, "channels": 3, "color_order": "RGB", "scale": 1 / 255, "mean": [0.5] * 3,
            "std": [0.5] * 3}
    f = export_coreml_image(model, spec, ["a", "b", "c", "d"], tmp_path)
    assert f.info["rewrites"] == {"addcmul-as-mul-add": 2} and f.info["spec_check"]["ok"]
    q = quantize_export(model, x, x, config_for("coreml-int8"), tmp_path / "int8.mlpackage")
    assert q.precision == "int8" and q.info["spec_check"]["ok"]
