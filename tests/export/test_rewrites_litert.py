"""LiteRT rewrites: same outputs, and a real litert-torch conversion that shows what each one changed."""

from __future__ import annotations

import numpy as np
import pytest
from export_testkit import eager, mobilevitv2_like, run_tflite
from pocketvit.export.rewrites import REWRITES, apply_rewrites

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
pytest.importorskip("litert_torch")

# maxpool-edge-pad, linear-attention-broadcast and nearest-resize-as-gather have their own tests
LITERT = [r.name for r in REWRITES if "litert" in r.targets
          and r.name not in ("maxpool-edge-pad", "linear-attention-broadcast", "nearest-resize-as-gather")]


def convnext_like():
    """timm LayerNorm2d after a stem, a ConvNeXt-style block (7x7 depthwise conv, permute, LayerNorm, MLP),
    a FastViT-style 7x7 depthwise ConvNormAct (its BatchNorm is folded), a strided one (left alone)."""
    from timm.layers import ConvNormAct, LayerNorm, LayerNorm2d
    from torch import nn

    class Net(nn.Module):
        def __init__(self, c: int = 16):
            super().__init__()
            self.stem, self.norm0 = nn.Conv2d(3, c, 4, stride=4), LayerNorm2d(c)
            self.dw, self.norm = nn.Conv2d(c, c, 7, padding=3, groups=c), LayerNorm(c)
            self.fc1, self.fc2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
            self.dw_bn = ConvNormAct(c, c, 7, groups=c, apply_act=False)  # conv without bias, then BatchNorm
            self.dw_strided = nn.Conv2d(c, c, 7, stride=2, padding=3, groups=c)

        def forward(self, x):
            x = self.norm0(self.stem(x))
            y = self.norm(self.dw(x).permute(0, 2, 3, 1))
            x = x + self.fc2(torch.nn.functional.gelu(self.fc1(y))).permute(0, 3, 1, 2)
            return self.dw_strided(self.dw_bn(x)).mean((2, 3))

    torch.manual_seed(0)
    model = Net().eval()
    with torch.no_grad():  # non-trivial affine parameters
        for ln in (model.norm0, model.norm, model.dw_bn.bn):
            ln.weight.normal_(1.0, 0.3)
            ln.bias.normal_(0.0, 0.3)
        model.dw_bn.bn.running_mean.normal_(0.0, 0.3)
        model.dw_bn.bn.running_var.uniform_(0.5, 2.0)
    return model, torch.randn(1, 3, 36, 44)


@pytest.mark.parametrize("name", LITERT)
def test_each_litert_rewrite_keeps_outputs(name):
    from pocketvit.export.prepare import prepare_for_export

    model, x = convnext_like()
    rewritten = prepare_for_export(model)
    applied = apply_rewrites(rewritten, "litert", disabled=[n for n in LITERT if n != name])
    assert applied == {name: 2}  # two LayerNorms / two stride-1 7x7 depthwise convs
    if name == "layernorm-keepdim":  # LiteRT only (the depthwise rewrites serve ExecuTorch too)
        assert name not in apply_rewrites(prepare_for_export(model), "executorch")
    np.testing.assert_allclose(eager(rewritten, x), eager(model, x), atol=1e-5)


def depthwise_kernels(path) -> list[tuple[int, int]]:
    """(kh, kw) of every DEPTHWISE_CONV_2D in a .tflite."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    shapes = {d["index"]: tuple(int(v) for v in d["shape"]) for d in interp.get_tensor_details()}
    return sorted(shapes[d["inputs"][1]][1:3] for d in interp._get_ops_details() if d["op_name"] == "DEPTHWISE_CONV_2D")


def test_litert_rewrites_in_a_real_conversion(tmp_path):
    from pocketvit.export.litert import export_litert

    model, x = convnext_like()
    ref = eager(model, x)
    f = export_litert(model, x, tmp_path / "m.tflite", compare_rewrites=True)
    after, before = f.info, f.info["before_rewrites"]
    assert after["rewrites"] == {"layernorm-keepdim": 2, "depthwise7-as-core-ring": 2}
    # layernorm-keepdim: no rank-1 statistics, so no SQUARED_DIFFERENCE and fewer RESHAPEs
    assert "SQUARED_DIFFERENCE" in before["ops"] and "SQUARED_DIFFERENCE" not in after["ops"]
    assert after["ops"].get("RESHAPE", 0) < before["ops"]["RESHAPE"]
    # depthwise7-as-core-ring: a 5x5 core and two dilated border convs (2x7, 5x2) instead of XNNPACK's 49-tap
    # multi-pass kernel (the strided conv stays); the 5x5 split it comes before finds nothing left
    assert depthwise_kernels(f.path) == [(2, 7)] * 2 + [(5, 2)] * 2 + [(5, 5)] * 2 + [(7, 7)]
    assert before["ops"]["DEPTHWISE_CONV_2D"] == 3
    assert after["ops"].get("MUL", 0) <= before["ops"].get("MUL", 0)  # the BatchNorm is folded, not left as MUL/SUB
    assert after["delegate_calls"] == 1 and after["ops_outside"] == 0 and after["transposes"] <= before["transposes"]
    got = run_tflite(f.path, x)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert (got.argmax(1) == ref.argmax(1)).all()


def resnet_stem_like():
    """ResNet's stem (conv, BatchNorm, ReLU, 3x3/2 max pool with padding 1) at an even size, a padded pool straight
    on a conv's signed output (edge padding must be exact for negative values too) and an unpadded pool (left
    alone)."""
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
                          nn.Conv2d(8, 8, 3, padding=1), nn.MaxPool2d(3, 2, 1), nn.MaxPool2d(2), nn.Flatten()).eval()
    return model, torch.randn(1, 3, 40, 32)


def test_maxpool_edge_pad_is_exact_and_takes_the_pad_into_the_delegate(tmp_path):
    from pocketvit.export.litert import export_litert
    from pocketvit.export.prepare import prepare_for_export

    model, x = resnet_stem_like()
    rewritten = prepare_for_export(model)
    assert apply_rewrites(rewritten, "litert") == {"maxpool-edge-pad": 2}
    assert "maxpool-edge-pad" not in apply_rewrites(prepare_for_export(model), "executorch")  # XNNPACK pads it there
    for inputs in (x, -x, torch.randn(2, 3, 17, 23)):  # max is exact: bit-identical outputs, odd and even sizes
        np.testing.assert_array_equal(eager(rewritten, inputs), eager(model, inputs))
    f = export_litert(model, x, tmp_path / "m.tflite", compare_rewrites=True)
    after, before = f.info, f.info["before_rewrites"]
    assert after["rewrites"] == {"maxpool-edge-pad": 2}
    assert before["ops_outside"] >= 1 and "PADV2" in before["ops"]  # litert-torch's -inf padding, outside XNNPACK
    assert after["delegate_calls"] == 1 and after["ops_outside"] == 0 and "PADV2" not in after["ops"]
    np.testing.assert_allclose(run_tflite(f.path, x), eager(model, x), atol=1e-5)


def test_maxpool_edge_pad_converts_asymmetric_padding_right(tmp_path):
    """A pool padded on one axis only: litert-torch 0.10 writes it as a SAME pool, padded on both (38x30 out of
    a 38x30 map where torch gives 38x28); with the rewrite the file gives torch's shape and values."""
    from pocketvit.export.litert import export_litert
    from torch import nn

    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Conv2d(3, 8, 3), nn.MaxPool2d(3, 1, (1, 0))).eval(), torch.randn(1, 3, 40, 32)
    f = export_litert(model, x, tmp_path / "m.tflite")
    assert f.info["rewrites"] == {"maxpool-edge-pad": 1}
    got, ref = run_tflite(f.path, x), eager(model, x)
    assert got.shape == ref.shape == (1, 8, 38, 28)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_litert_int8_takes_hardswish_and_padded_pools_into_the_delegate(tmp_path):
    """MobileNetV3-style hard-swish and ResNet's padded max pool in a LiteRT int8 file: with the int8 rewrites one
    XNNPACK call and nothing outside; without them XNNPACK leaves every int8 HARD_SWISH and the -inf PADV2 out."""
    from pocketvit.export.quantize import config_for, quantize_export
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Hardswish(), nn.MaxPool2d(3, 2, 1),
                          nn.Conv2d(8, 8, 3, padding=1), nn.Hardswish(), nn.Flatten()).eval()
    x = torch.randn(1, 3, 32, 32)
    calib = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    f = quantize_export(model, x, calib, config_for("litert-int8"), tmp_path / "int8.tflite")
    assert f.info["rewrites"] == {"maxpool-edge-pad": 1, "hardswish-as-hardtanh-mul": 2}
    assert (f.info["delegate_calls"], f.info["ops_outside"]) == (1, 0)
    from pocketvit.runtime.backends import open_backend

    out, ref = open_backend("litert", f.path).run(x.numpy()), eager(model, x)  # int8 in and out, (de)quantized
    assert np.dot(out.ravel(), ref.ravel()) / (np.linalg.norm(out) * np.linalg.norm(ref)) > 0.95
    off = config_for("litert-int8", no_rewrite=("hardswish-as-hardtanh-mul", "maxpool-edge-pad"))
    raw = quantize_export(model, x, calib, off, tmp_path / "raw.tflite").info
    assert raw["rewrites"] == {} and raw["outside_ops"].get("HARD_SWISH", 0) >= 1 and raw["outside_ops"]["PADV2"] == 1
    assert raw["delegate_calls"] > 1


def test_linear_attention_broadcast_makes_mobilevitv2_attention_convert(tmp_path):
    """litert-torch 0.10 cannot convert MobileViTv2's linear attention ('tfl.mul' op operands don't have
    broadcast-compatible shapes); rewritten with implicit broadcasting it converts and matches eager."""
    from pocketvit.errors import ExportError
    from pocketvit.export.litert import export_litert

    model, x = mobilevitv2_like()
    ref = eager(model, x)
    with pytest.raises(ExportError) as ei:  # the toolchain's failure, reproduced with the rewrite switched off
        export_litert(model, x, tmp_path / "raw.tflite", disabled_rewrites=("linear-attention-broadcast",))
    assert "tfl.mul" in str(ei.value) and not (tmp_path / "raw.tflite").exists()
    f = export_litert(model, x, tmp_path / "m.tflite", compare_rewrites=True)
    assert f.info["rewrites"] == {"linear-attention-broadcast": 1}
    assert "tfl.mul" in f.info["before_rewrites"]["error"]  # what the rewrite bought, as `export` prints it
    assert f.info["delegate_calls"] == 1 and f.info["ops_outside"] == 0
    np.testing.assert_allclose(run_tflite(f.path, x), ref, atol=1e-5)
    from pocketvit.export.prepare import prepare_for_export

    rewritten = prepare_for_export(model)
    assert "linear-attention-broadcast" not in apply_rewrites(rewritten, "executorch")  # LiteRT's problem only
    assert apply_rewrites(rewritten, "litert") == {"linear-attention-broadcast": 1}
    for inputs in (x, torch.randn(2, 3, 32, 32)):  # the same arithmetic
        np.testing.assert_array_equal(eager(rewritten, inputs), eager(model, inputs))


def test_nearest_resize_as_gather_gives_ghostnetv2_attention_torch_pixels(tmp_path):
    """GhostNetV2's DFC attention upsamples its gate from 3 x 3 to a 7 x 7 map with nearest interpolation; litert-torch's
    RESIZE_NEAREST_NEIGHBOR (half-pixel centers) picks other pixels there, so the raw file misses parity. Rewritten
    as two index selects it matches eager, at odd and even sizes; the gather equals F.interpolate everywhere."""
    from pocketvit.export.litert import export_litert
    from pocketvit.export.rewrites_litert import nearest_resize_gather
    from timm.models.ghostnet import GhostModuleV2
    from torch import nn

    for n_in in range(1, 12):
        for n_out in range(1, 30):
            t = torch.randn(1, 2, n_in, n_in + 1)
            assert torch.equal(nearest_resize_gather(t, (n_out, n_out + 3)),
                               torch.nn.functional.interpolate(t, size=(n_out, n_out + 3), mode="nearest"))

    class Net(nn.Module):
        def __init__(self, c: int = 8):
            super().__init__()
            self.stem, self.ghost, self.head = nn.Conv2d(3, c, 4, stride=4), GhostModuleV2(c, c), nn.Linear(c, 5)

        def forward(self, x):
            y = self.ghost(self.stem(x))
            return self.head(y.flatten(2).transpose(1, 2)).flatten(1)  # every position's scores, not a mean

    torch.manual_seed(0)
    model = Net().eval()
    for size in (28, 32):  # 7 x 7 maps (3 -> 7, non-integer scale) and 8 x 8 (4 -> 8)
        x = torch.randn(1, 3, size, size)
        ref = eager(model, x)
        raw = export_litert(model, x, tmp_path / f"raw{size}.tflite", disabled_rewrites=("nearest-resize-as-gather",))
        f = export_litert(model, x, tmp_path / f"m{size}.tflite")
        assert f.info["rewrites"].get("nearest-resize-as-gather") == 1
        np.testing.assert_allclose(run_tflite(f.path, x), ref, atol=1e-5)
        raw_diff = np.abs(run_tflite(raw.path, x) - ref).max()
        assert (raw_diff > 1e-3) if size == 28 else (raw_diff < 1e-5)  # the toolchain's error, at odd sizes only


def test_cascaded_attention_transposed_matmul_lets_efficientvit_m_quantize_for_litert(tmp_path):
    """litert-torch's int8 conversion of EfficientViT-M0 built for 64 x 64 fails in its CascadedGroupAttention
    ("'tfl.batch_matmul' op found invalid output rank, expected 3 but got 4"; smaller configurations convert);
    with the value product transposed it converts and runs, and the rewritten model gives eager's outputs."""
    from pocketvit.bench.measure import parity
    from pocketvit.errors import ExportError
    from pocketvit.export.prepare import prepare_for_export, recalibrate_batchnorm
    from pocketvit.export.quantize import config_for, quantize_export
    from pocketvit.runtime.backends import open_backend


    torch.manual_seed(0)
    model = timm.create_model("efficientvit_m0", img_size=64, num_classes=10)
    recalibrate_batchnorm(model, (16, 3, 64, 64))  # random weights: statistics that keep activations in range
    model.eval()
    calib = torch.randn(16, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    rewritten = prepare_for_export(model)
    assert apply_rewrites(rewritten, "litert-int8") == {"cascaded-attention-transposed-matmul": 6}
    assert "cascaded-attention-transposed-matmul" not in apply_rewrites(prepare_for_export(model), "litert")
    np.testing.assert_allclose(eager(rewritten, calib[:4]), eager(model, calib[:4]), rtol=1e-4, atol=1e-4)  # matmul order
    f = quantize_export(model, calib[:1], calib, config_for("litert"), tmp_path / "m.tflite")
    assert f.info["rewrites"].get("cascaded-attention-transposed-matmul") == 6
    b = open_backend("litert", f.path, num_threads=1)
    out, ref = b.run(calib[:4].numpy()), eager(model, calib[:4])
    b.close()
    figures = parity(out, ref)  # random weights: int8 moves them far, but the file follows its input
    assert "constant_output" not in figures and figures["cosine"] > 0.5, figures
    with pytest.raises(ExportError, match="batch_matmul"):
        quantize_export(model, calib[:1], calib, config_for("litert", no_rewrite=("cascaded-attention-transposed-matmul",)),
                        tmp_path / "raw.tflite")
