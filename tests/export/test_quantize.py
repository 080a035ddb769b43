"""int8 per target on a tiny TinyViT: each quantizer, then the file on its own runtime, agreeing with float."""

from __future__ import annotations

import numpy as np
import pytest
from export_testkit import spread_tiny_vit

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_vit():
    """A tiny TinyViT whose logits are spread out (random init, BatchNorm re-estimated, head scaled)."""
    m, gen = spread_tiny_vit()
    calib = torch.randn(64, 1, 16, 16, generator=gen)  # stands in for training images
    probe = torch.randn(48, 1, 16, 16, generator=gen)
    return m, calib, probe


def _agreement(runtime: str, path, model, probe) -> tuple[float, float]:
    from pocketvit.runtime.backends import open_backend

    b = open_backend(runtime, path, num_threads=1)
    out = b.run(probe.numpy())
    b.close()
    with torch.no_grad():
        ref = model(probe).numpy()
    cos = (out * ref).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))
    return float((out.argmax(1) == ref.argmax(1)).mean()), float(cos.min())


@pytest.mark.parametrize("cfg_name", ["executorch", pytest.param("executorch-dynamic", marks=pytest.mark.slow),
                                      "litert", "onnx"])
def test_int8_file_runs_on_its_runtime_and_agrees(tiny_vit, tmp_path, cfg_name):
    from pocketvit.export._common import file_extension
    from pocketvit.export.quantize import config_for, quantize_export

    model, calib, probe = tiny_vit
    base = cfg_name.split("-")[0]
    cfg = config_for(base, mode="dynamic") if cfg_name.endswith("dynamic") else config_for(base)
    f = quantize_export(model, probe[:1], calib, cfg, tmp_path / f"m{file_extension(base)}")
    assert f.precision == "int8" and f.target == f"{base}-int8" and f.path.is_file()
    fp32_size = model.head.weight.numel() * 4  # sanity only: the file exists and is not empty
    assert f.path.stat().st_size > fp32_size
    agree, cos = _agreement(f.runtime, f.path, model, probe)
    assert agree >= 0.85 and cos >= 0.9, (agree, cos)
    if base == "executorch":
        assert f.info["delegate_calls"] >= 1
    if cfg_name in ("executorch", "litert"):  # static int8: every Conv/Linear weight stored as int8
        _check_contents(f.path, model, per_channel_file=base == "executorch")
    if cfg_name == "executorch":
        assert f.info["nodes_delegated"] > 0
    if base == "litert":
        ops = f.info["ops"]
        assert ops.get("FULLY_CONNECTED", 0) > 0
    if base == "onnx":
        assert f.info["ops"].get("QuantizeLinear", 0) > 0 and f.info["ops"].get("DequantizeLinear", 0) > 0


def _check_contents(path, model, per_channel_file: bool) -> None:
    """contents() finds every Conv/Linear weight of the model stored once as int8, and accounts for the file."""
    from pocketvit.export.quantize.contents import contents, format_contents
    from pocketvit.export.quantize.pt2e import quantizable_layers

    c = contents(path)
    mods = dict(model.named_modules())
    weights = sum(mods[n].weight.numel() for n in quantizable_layers(model))
    int8 = sum(t["bytes"] for t in c["tensors"] if t["dtype"].startswith("int8"))
    assert int8 >= weights, (int8, weights, format_contents(c))
    if per_channel_file:  # XNNPACK keeps the attention bias tables outside the delegate: exactly the weights
        assert c["summary"]["by_role"]["weight (int8)"] == weights, format_contents(c)
        assert "int8 (per-channel)" in c["summary"]["by_dtype"]
    assert 0 < c["summary"]["tensor_bytes"] < c["bytes"] == path.stat().st_size


@pytest.mark.slow
def test_per_tensor_weights_make_a_smaller_executorch_file(tiny_vit, tmp_path):
    from pocketvit.export.quantize import ExecuTorchInt8, quantize_export
    from pocketvit.export.quantize.contents import contents

    model, calib, probe = tiny_vit
    files = {pc: quantize_export(model, probe[:1], calib, ExecuTorchInt8(per_channel=pc), tmp_path / f"{pc}.pte")
             for pc in (True, False)}
    per_tensor = contents(files[False].path)
    assert "int8 (per-tensor)" in per_tensor["summary"]["by_dtype"]
    assert "int8 (per-channel)" not in per_tensor["summary"]["by_dtype"]
    assert files[False].path.stat().st_size < files[True].path.stat().st_size  # no scale arrays
    agree, cos = _agreement("executorch", files[False].path, model, probe)
    assert agree >= 0.85 and cos >= 0.9, (agree, cos)


@pytest.mark.slow
def test_litert_full_integer_file_has_int8_input(tiny_vit, tmp_path):
    from pocketvit.export.quantize import LiteRTInt8, quantize_export
    from pocketvit.runtime.backends import open_backend

    model, calib, probe = tiny_vit
    f = quantize_export(model, probe[:1], calib, LiteRTInt8(), tmp_path / "m.tflite")
    b = open_backend("litert", f.path)
    assert b.input_dtype == np.int8 and b.input_quantization[0] > 0  # the runtime quantizes floats itself
    b.close()


def test_coreml_int8_weights_convert_and_pass_the_spec_check(tiny_vit, tmp_path):
    from pocketvit.export.quantize import CoreMLInt8, quantize_export

    model, calib, probe = tiny_vit
    f = quantize_export(model, probe[:1], calib, CoreMLInt8(), tmp_path / "m.mlpackage")
    assert f.info["spec_check"]["ok"] and f.info["executed"] is False
    assert f.info["int8_weight_ops"] > 0 and f.precision == "int8"


def test_coreml_w8a8_says_it_needs_macos(tiny_vit, tmp_path):
    import platform

    from pocketvit.errors import ExportError
    from pocketvit.export.quantize import CoreMLInt8, quantize_export

    if platform.system() == "Darwin":
        pytest.skip("on macOS W8A8 calibration can run")
    model, calib, probe = tiny_vit
    with pytest.raises(ExportError, match="macOS"):
        quantize_export(model, probe[:1], calib, CoreMLInt8(mode="w8a8"), tmp_path / "m.mlpackage")


def test_float_layers_stay_float_in_the_onnx_graph(tiny_vit, tmp_path):
    """A layer named as float gets no QuantizeLinear before its weights: fewer quantized nodes."""
    import onnx
    from pocketvit.export.quantize import OnnxInt8, quantize_export

    model, calib, probe = tiny_vit
    a = quantize_export(model, probe[:1], calib[:16], OnnxInt8(), tmp_path / "a.onnx")
    b = quantize_export(model, probe[:1], calib[:16], OnnxInt8(), tmp_path / "b.onnx",
                        float_layers=["head", "stages.0.blocks.0.attn.q"])
    assert b.info["nodes_kept_float"] > 0 and b.info["float_layers"] == ["head", "stages.0.blocks.0.attn.q"]

    def dq(path):
        return sum(n.op_type == "DequantizeLinear" for n in onnx.load(str(path)).graph.node)

    assert dq(b.path) < dq(a.path)


def test_coreml_palettized_weights_convert_and_shrink(tiny_vit, tmp_path):
    """quantize.coreml: palettize: every weight becomes a k-means lookup table (constexpr_lut_to_dense), the
    package passes the spec check (Core ML cannot execute on Linux) and is smaller than the fp16 one."""
    import coremltools as ct
    from pocketvit.export.quantize import CoreMLInt8, quantize_export

    model, calib, probe = tiny_vit
    f = quantize_export(model, probe[:1], calib, CoreMLInt8(mode="palettize", nbits=4), tmp_path / "m.mlpackage")
    assert f.info["spec_check"]["ok"] and f.info["executed"] is False and f.info["nbits"] == 4
    assert f.info["palettized_weight_ops"] > 0 and f.info["int8_weight_ops"] == 0
    assert f.info["bytes"] < f.info["fp16_bytes"] and f.info["size_vs_fp16"] < 1
    prog = ct.utils.load_spec(str(f.path)).mlProgram
    luts = [op for fn in prog.functions.values() for blk in fn.block_specializations.values()
            for op in blk.operations if op.type == "constexpr_lut_to_dense"]
    n_weights = sum(1 for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert len(luts) >= n_weights - 2, (len(luts), n_weights)  # convs with BatchNorm folded in, linears
    for op in luts:  # a 2**4-entry fp16 table per weight, indexed by packed 4-bit codes
        dims = op.attributes["lut"].type.tensorType.dimensions
        assert np.prod([d.constant.size for d in dims]) == 16 and "indices" in op.attributes


def window_padded_block():
    """TinyViT's window attention on a map that is not a multiple of the window (7 x 7, window 4): the block
    pads the int8 residual stream before partitioning, as TinyViT-5M and Swin-T do at 64 x 64."""
    from timm.models.tiny_vit import TinyVitBlock

    class Windowed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 16, 3, stride=2, padding=1)
            self.block = TinyVitBlock(16, 2, window_size=4)
            self.head = torch.nn.Linear(16, 10)

        def forward(self, x):
            return self.head(self.block(self.stem(x).permute(0, 2, 3, 1)).mean((1, 2)))

    torch.manual_seed(0)
    return Windowed().eval(), torch.randn(1, 3, 13, 13), torch.randn(16, 3, 13, 13)


def test_int8_pad_keeps_its_input_scale_so_xnnpack_loads_the_file(tmp_path, monkeypatch):
    """A constant pad of an int8 tensor shares its input's quantization parameters (quantize.pt2e): XNNPACK's
    static pad takes one scale in and out. Left to PT2E (the pad unannotated, float between a dequantize and the
    next op's quantize) the .pte is written but does not load ('Failed to create StaticConstantPad node')."""
    from pocketvit.errors import BundleError
    from pocketvit.export.quantize import config_for, pt2e, quantize_export

    model, x, calib = window_padded_block()
    f = quantize_export(model, x, calib, config_for("executorch"), tmp_path / "shared.pte")
    agree, cos = _agreement("executorch", f.path, model, torch.cat([x, calib[:7]]))
    assert agree >= 0.85 and cos >= 0.99, (agree, cos)
    assert f.info["quantizer_mends"] == {"pad-shares-scale": 1}
    monkeypatch.setattr(pt2e, "share_pad_qparams", lambda graph: 0)
    raw = quantize_export(model, x, calib, config_for("executorch"), tmp_path / "raw.pte")
    with pytest.raises((BundleError, RuntimeError), match="(?i)failed to load|StaticConstantPad"):
        _agreement("executorch", raw.path, model, x)


def coatnet_stage_entrance():
    """CoAtNet's first transformer block (timm maxxvit): LayerNorm2d, a 2 x 2 pool, a 1 x 1 qkv conv split into
    heads (the split stays outside XNNPACK, so the int8 residual stream leaves a delegate) and a pooled shortcut."""
    from timm.layers import LayerNorm2d

    class Entrance(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 16, 3, padding=1)
            self.norm = LayerNorm2d(16)
            self.qkv, self.proj = torch.nn.Conv2d(16, 48, 1), torch.nn.Conv2d(16, 16, 1)

        def forward(self, x):
            x = self.stem(x)
            y = torch.nn.functional.avg_pool2d(self.norm(x), 2)
            b, _, h, w = y.shape
            q, k, v = self.qkv(y).view(b, 2, 24, -1).split([8, 8, 8], dim=2)
            attn = (q.transpose(-2, -1) @ k).softmax(-1)
            out = (v @ attn.transpose(-2, -1)).reshape(b, 16, h, w)
            return torch.nn.functional.avg_pool2d(x, 2) + self.proj(out)

    torch.manual_seed(0)
    return Entrance().eval(), torch.randn(1, 3, 8, 8), torch.randn(16, 3, 8, 8)


def test_each_dequantize_has_one_user_so_xnnpack_outputs_keep_their_layout(tmp_path, monkeypatch):
    """A dequantize shared by a float op (layernorm2d-as-conv's channel statistics) and a delegate output: XNNPACK's
    channels-last pass redirected both to its layout copy and the output came back channels-last ('Attempted to
    resize a static tensor', CoAtNet int8 at 64 x 64). quantize.pt2e.one_dq_per_user gives each user its own."""
    from pocketvit.errors import BundleError
    from pocketvit.export.quantize import config_for, pt2e, quantize_export
    from pocketvit.runtime.backends import open_backend

    model, x, calib = coatnet_stage_entrance()
    f = quantize_export(model, x, calib, config_for("executorch"), tmp_path / "mended.pte")
    assert f.info["quantizer_mends"].get("dq-per-user", 0) > 0 and f.info["rewrites"] == {"layernorm2d-as-conv": 1}
    b = open_backend("executorch", f.path, num_threads=1)
    out = b.run(x.numpy())
    b.close()
    with torch.no_grad():
        ref = model(x).numpy()
    assert out.shape == ref.shape and np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.98
    monkeypatch.setattr(pt2e, "one_dq_per_user", lambda graph: 0)
    raw = quantize_export(model, x, calib, config_for("executorch"), tmp_path / "raw.pte")
    b = open_backend("executorch", raw.path, num_threads=1)
    with pytest.raises(BundleError, match="Attempted to resize a static tensor"):
        b.run(x.numpy())
    b.close()


def test_symbolic_sizes_are_not_observed_so_litert_calibrates_swin(tmp_path, monkeypatch):
    """Swin's shifted windows under a symbolic batch: litert-torch's quantizer annotated an arithmetic op on
    symbolic sizes like activations, and calibration stopped ("'int' object has no attribute 'numel'"); specs on
    values that are not float tensors are dropped (quantize.pt2e.drop_non_float), and the file runs."""
    from pocketvit.errors import ExportError
    from pocketvit.export.quantize import config_for, pt2e, quantize_export
    from timm.models.swin_transformer import SwinTransformerBlock

    class SwinLike(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 16, 3, stride=2, padding=1)
            self.block = SwinTransformerBlock(16, (8, 8), num_heads=2, window_size=4, shift_size=2)
            self.head = torch.nn.Linear(16, 10)

        def forward(self, x):
            return self.head(self.block(self.stem(x).permute(0, 2, 3, 1)).mean((1, 2)))

    torch.manual_seed(0)
    model, calib = SwinLike().eval(), torch.randn(16, 3, 16, 16)
    f = quantize_export(model, calib[:1], calib, config_for("litert"), tmp_path / "m.tflite")
    agree, cos = _agreement("litert", f.path, model, calib)
    assert agree >= 0.85 and cos >= 0.98, (agree, cos)
    assert f.info["quantizer_mends"].get("drop-non-float", 0) > 0
    monkeypatch.setattr(pt2e, "drop_non_float", lambda graph: 0)
    with pytest.raises(ExportError, match="numel"):
        quantize_export(model, calib[:1], calib, config_for("litert"), tmp_path / "raw.tflite")


def test_integer_scalars_of_float_arithmetic_become_floats():
    """quantize.pt2e.float_scalars: `2 * torch.div(t, 2, rounding_mode="floor")` (EdgeNeXt's and XCiT's Fourier
    encodings) keeps its value with a float operand; litert-torch's quantizer made the int an int64 constant and
    observed it ('"histogram_cpu" not implemented for 'Long'')."""
    from pocketvit.export.quantize.pt2e import export_graph, float_scalars

    class Fourier(torch.nn.Module):
        def forward(self, x):
            t = torch.arange(8, dtype=torch.float32)
            return x * (2 * torch.div(t, 2, rounding_mode="floor") + 1) - 3

    x = torch.randn(2, 8)
    graph, _ = export_graph(Fourier(), x)
    ref = graph(x)
    assert float_scalars(graph) == 3  # 2 *, + 1, - 3 (div's own 2 is a tensor operand of div.Tensor_mode)
    graph.recompile()
    arithmetic = [n for n in graph.graph.nodes if str(n.target) in ("aten.mul.Tensor", "aten.add.Tensor",
                                                                     "aten.sub.Tensor")]
    assert len(arithmetic) == 4 and not any(type(a) is int for n in arithmetic for a in n.args)
    assert torch.equal(graph(x), ref)
