"""timm families at small size, random init, exported and run on each runtime (slow).

BatchNorm statistics are re-estimated on random inputs first: with the default running stats a
random-init network's activations vanish layer by layer (TOOLCHAINS.md), which makes parity
meaningless and, for EfficientNet, runs on denormals.
"""

from __future__ import annotations

import numpy as np
import pytest
from export_testkit import RUNNERS
from pocketvit.export import export_model
from pocketvit.export.prepare import recalibrate_batchnorm

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

pytestmark = pytest.mark.slow

SIZE = 64
# name -> timm kwargs that make it work at SIZE x SIZE
MODELS = {
    "mobilenetv3_small_050": {},
    "resnet10t": {},
    "efficientnet_b0": {},
    "convnext_atto": {},
    "deit_tiny_patch16_224": {"img_size": SIZE},
    "tiny_vit_5m_224": {},  # no img_size kwarg; its windows pad, so 64x64 runs as is
    "fastvit_t8": {},  # re-parameterised by prepare
    "fastvit_mci0": {},  # MobileCLIP image tower, re-parameterised
    "mobilevit_xxs": {},
    "efficientvit_b0": {},
    "mobilevitv2_050": {},  # LiteRT through the linear-attention-broadcast rewrite
    "ghostnet_050": {},
}
TARGETS = ("executorch", "onnx", "litert")
COREML_MODELS = ("resnet10t", "deit_tiny_patch16_224", "ghostnet_050", "fastvit_mci0", "mobilevitv2_050")
_cache: dict = {}


def _model(name):
    if name not in _cache:
        torch.manual_seed(0)
        kwargs = MODELS.get(name, {})
        model = timm.create_model(name, pretrained=False, num_classes=10, **kwargs).eval()
        recalibrate_batchnorm(model, (4, 3, SIZE, SIZE), batches=3)
        x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            ref = model(x).numpy()
        _cache.clear()  # keep one model alive at a time
        _cache[name] = (model, x, ref)
    return _cache[name]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", list(MODELS))
def test_timm_family_parity(name, target, tmp_path):
    model, x, ref = _model(name)
    f = export_model(model, x, target, tmp_path, name=name, model_name=name)
    out = RUNNERS[target](f.path, x)
    cos = float(np.dot(out.ravel(), ref.ravel()) / (np.linalg.norm(out) * np.linalg.norm(ref)))
    assert out.argmax() == ref.argmax(), f"{name} {target}: top-1 differs"
    assert cos > 0.999, f"{name} {target}: cosine {cos}"
    if target == "executorch":
        assert f.info["delegate_calls"] >= 1


@pytest.mark.parametrize("name", COREML_MODELS)
def test_timm_coreml_conversion(name, tmp_path):
    pytest.importorskip("coremltools")
    model, x, _ = _model(name)
    f = export_model(model, x, "coreml", tmp_path, name=name, model_name=name)
    assert f.info["executed"] is False and f.info["spec_check"]["ok"]
    # GhostNet does not go through torch.export ("Unsupported fx node alias"); the trace route takes it.
    assert f.info["frontend"] == ("torch.jit.trace" if name.startswith("ghostnet") else "torch.export")


@pytest.mark.parametrize("name", ["fastvit_t8", "fastvit_mci0"])
def test_reparameterized_before_export(name):
    from pocketvit.export.prepare import prepare_for_export

    model, x, ref = _model(name)
    prepared = prepare_for_export(model)
    assert sum(1 for _ in prepared.modules()) < sum(1 for _ in model.modules())
    with torch.no_grad():
        np.testing.assert_allclose(prepared(x).numpy(), ref, atol=1e-4)


@pytest.mark.parametrize("name", ["fastvit_mci0", "mobilevitv2_050", "ghostnet_050"])
def test_timm_coreml_dropin(name, tmp_path):
    """The Core ML image classifier of models whose mean is 0 (MCi, MobileViTv2: coremltools writes no bias add)
    and of GhostNet (torch.jit.trace route), with the preprocessing timm gives them."""
    pytest.importorskip("coremltools")
    from pocketvit.export.coreml_image import export_coreml_image
    from pocketvit.models.sources import resolve_model

    resolved = resolve_model(f"timm:{name}", input_size=(SIZE, SIZE), num_classes=10)
    f = export_coreml_image(resolved.model, resolved.input, resolved.labels, tmp_path, model_name=name)
    assert f.info["spec_check"]["ok"], f.info["spec_check"]["problems"]
    assert f.info["frontend"] == ("torch.jit.trace" if name.startswith("ghostnet") else "torch.export")
    if name != "ghostnet_050":
        assert resolved.input["mean"] == [0.0] * 3 and f.info["spec_check"]["omitted"] == ["bias"]


def test_mobilevitv2_litert_without_its_rewrite_is_a_clear_error(tmp_path):
    """Without linear-attention-broadcast MobileViTv2 does not convert to LiteRT (TOOLCHAINS.md); the error names
    target, operator and the known issue's workaround, and leaves nothing behind."""
    from pocketvit.errors import ExportError

    model, x, _ = _model("mobilevitv2_050")
    with pytest.raises(ExportError) as ei:
        export_model(model, x, "litert", tmp_path, model_name="mobilevitv2_050",
                     disabled_rewrites=("linear-attention-broadcast",))
    msg = str(ei.value)
    assert "'mobilevitv2_050' to litert at tfl.mul" in msg and "--debug" in msg
    assert list(tmp_path.iterdir()) == []
