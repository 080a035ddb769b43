"""Each export rewrite: same outputs before and after, and fewer nodes outside XNNPACK (a real lowering)."""

from __future__ import annotations

import numpy as np
import pytest
from export_testkit import RUNNERS, eager
from pocketvit.errors import ExportError
from pocketvit.export.rewrites import REWRITES, apply_rewrites, check_rewrite_names

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")


def tiny_timm_vit():
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10).eval()
    return model, torch.randn(1, 3, 32, 32)


# the transformer rewrites; the convnet ones have their own tiny modules (test_rewrites_conv.py)
VIT_REWRITES = ("layernorm-as-linear", "attention-as-bmm", "prefix-tokens")


@pytest.mark.parametrize("name", VIT_REWRITES)
def test_rewrite_keeps_outputs_and_takes_nodes_into_the_delegate(tmp_path, name):
    from pocketvit.export.executorch import export_executorch
    from pocketvit.export.prepare import prepare_for_export

    model, x = tiny_timm_vit()
    ref = eager(model, x)
    rewritten = prepare_for_export(model, unfused_attention=True)
    others = [r.name for r in REWRITES if r.name != name]
    assert apply_rewrites(rewritten, "executorch", disabled=others)[name] > 0
    np.testing.assert_allclose(eager(rewritten, x), ref, atol=1e-5)

    without = export_executorch(model, x, tmp_path / "without.pte", disabled_rewrites=("all",))
    with_it = export_executorch(model, x, tmp_path / "with.pte", disabled_rewrites=tuple(others))
    assert set(with_it.info["rewrites"]) == {name} and without.info["rewrites"] == {}
    assert with_it.info["nodes_outside"] < without.info["nodes_outside"]
    assert with_it.info["delegate_calls"] <= without.info["delegate_calls"]
    for f in (with_it, without):
        out = RUNNERS["executorch"](f.path, x)
        assert float(np.abs(out - ref).max()) < 1e-4


@pytest.mark.slow
def test_all_rewrites_keep_a_timm_vit_in_few_delegate_calls(tmp_path):
    """With every rewrite the whole ViT is one delegate call, nothing outside; top-1 equal on every runtime."""
    from pocketvit.export import export_model

    model, x = tiny_timm_vit()
    ref = eager(model, x)
    raw = export_model(model, x, "executorch", tmp_path, name="raw", disabled_rewrites=("all",)).info
    f = export_model(model, x, "executorch", tmp_path, name="fast", compare_rewrites=True)
    assert f.info["nodes_outside"] == 0 < raw["nodes_outside"]
    before = f.info["before_rewrites"]  # what `pocketvit export` prints as "without them"
    assert (before["delegate_calls"], before["nodes_outside"]) == (raw["delegate_calls"], raw["nodes_outside"])
    assert f.info["delegate_calls"] == 1 < raw["delegate_calls"]
    for target in ("executorch", "litert", "onnx"):
        g = f if target == "executorch" else export_model(model, x, target, tmp_path, name=target)
        assert RUNNERS[target](g.path, x).argmax() == ref.argmax()


def test_unknown_rewrite_name_is_refused_with_the_known_ones():
    with pytest.raises(ExportError, match="layernorm-as-linear"):
        check_rewrite_names(["no-such-rewrite"])
    assert check_rewrite_names(["all"]) == {"all"}


def tiny_timm_tinyvit():
    from timm.models.tiny_vit import TinyVit

    torch.manual_seed(0)
    return TinyVit(in_chans=3, num_classes=10, embed_dims=(16, 32), depths=(1, 1), num_heads=(1, 2),
                   window_sizes=(7, 7)).eval(), torch.randn(1, 3, 64, 64)


@pytest.mark.parametrize("make,expected", [
    # windowed attention + bias table; the head's channels-first LayerNorm2d
    (tiny_timm_tinyvit, {"layernorm-as-linear": 2, "attention-as-bmm": 1, "layernorm2d-as-conv": 1}),
])
def test_rewrites_on_timm_tinyvit(tmp_path, make, expected):
    from pocketvit.export.executorch import export_executorch

    model, x = make()
    ref = eager(model, x)
    raw = export_executorch(model, x, tmp_path / "raw.pte", disabled_rewrites=("all",)).info
    f = export_executorch(model, x, tmp_path / "fast.pte")
    assert f.info["rewrites"] == expected
    assert f.info["nodes_outside"] < raw["nodes_outside"] and f.info["delegate_calls"] < raw["delegate_calls"]
    out = RUNNERS["executorch"](f.path, x)
    assert float(np.abs(out - ref).max()) < 1e-4 and out.argmax() == ref.argmax()


def test_attention_as_bmm_on_fastvit_map_attention(tmp_path):
    """timm FastViT / MCi attention on a (B, C, H, W) map: same outputs, whole program in one delegate call."""
    from pocketvit.export.executorch import export_executorch
    from pocketvit.export.prepare import prepare_for_export
    from timm.models.fastvit import Attention

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, 2, 1), Attention(32, head_dim=16)).eval()
    x = torch.randn(1, 3, 16, 16)
    ref = eager(model, x)
    rewritten = prepare_for_export(model, unfused_attention=True)
    assert apply_rewrites(rewritten, "executorch")["attention-as-bmm"] == 1
    np.testing.assert_allclose(eager(rewritten, x), ref, atol=1e-5)
    without = export_executorch(model, x, tmp_path / "without.pte", disabled_rewrites=("all",))
    with_it = export_executorch(model, x, tmp_path / "with.pte")
    assert with_it.info["nodes_outside"] == 0 < without.info["nodes_outside"]
    assert with_it.info["delegate_calls"] == 1
    assert float(np.abs(RUNNERS["executorch"](with_it.path, x) - ref).max()) < 1e-4


def test_qkv_bias_into_linear_lets_eva_attention_quantize_for_executorch(tmp_path):
    """timm's EvaAttention concatenates its q/k/v biases on every call: with the bias computed at run time the
    int8 linear's weight dequantize stays outside XNNPACK and ExecuTorch has no kernel for it. Folded into the
    qkv layer once, the outputs are the same and the int8 .pte is written and runs."""
    torch = pytest.importorskip("torch")
    from pocketvit.export.prepare import prepare_for_export
    from pocketvit.export.quantize import config_for, quantize_export
    from timm.models.eva import EvaAttention

    class Tokens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Linear(8, 32)
            self.attn = EvaAttention(32, num_heads=2, qkv_bias=True, scale_norm=False)
            self.head = torch.nn.Linear(32, 10)

        def forward(self, x):
            return self.head(self.attn(self.embed(x)).mean(1))

    torch.manual_seed(0)
    model = Tokens().eval()
    with torch.no_grad():
        model.attn.q_bias.normal_()
        model.attn.v_bias.normal_()
    x, calib = torch.randn(1, 6, 8), torch.randn(16, 6, 8)
    rewritten = prepare_for_export(model)
    assert apply_rewrites(rewritten, "executorch-int8") == {"qkv-bias-into-linear": 1}
    np.testing.assert_allclose(eager(rewritten, calib), eager(model, calib), atol=1e-6)
    f = quantize_export(model, x, calib, config_for("executorch"), tmp_path / "int8.pte")
    assert f.info["rewrites"].get("qkv-bias-into-linear") == 1
    out, ref = RUNNERS["executorch"](f.path, x), eager(model, x)
    assert np.dot(out.ravel(), ref.ravel()) / (np.linalg.norm(out) * np.linalg.norm(ref)) > 0.95
    with pytest.raises(ExportError, match="dequantize_per_channel"):
        quantize_export(model, x, calib, config_for("executorch", no_rewrite=("qkv-bias-into-linear",)),
                        tmp_path / "raw.pte")
