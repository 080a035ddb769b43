"""ExecuTorch convnet rewrites (export/rewrites_conv.py): same outputs, fewer delegate calls or nodes outside
XNNPACK in a real lowering."""

from __future__ import annotations

import numpy as np
import pytest
from export_testkit import RUNNERS, eager
from pocketvit.export.rewrites import REWRITES, apply_rewrites

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
nn = torch.nn


def convnext_like():
    """timm LayerNorm2d after a stem and inside a ConvNeXt block with conv_mlp (7x7 depthwise, norm, 1x1 MLP)."""
    from timm.layers import LayerNorm2d

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 4, stride=4), LayerNorm2d(16), nn.Conv2d(16, 16, 7, padding=3, groups=16),
                          LayerNorm2d(16), nn.Conv2d(16, 32, 1), nn.GELU(), nn.Conv2d(32, 16, 1)).eval()
    with torch.no_grad():  # non-trivial affine parameters
        for ln in (model[1], model[3]):
            ln.weight.normal_(1.0, 0.3)
            ln.bias.normal_(0.0, 0.3)
    return model, torch.randn(1, 3, 32, 40)


def squeeze_excite_like():
    """MobileNetV3-style block: depthwise conv, hardswish, squeeze-excite gate with nn.Hardsigmoid."""

    class SE(nn.Module):
        def __init__(self, c: int):
            super().__init__()
            self.reduce, self.expand, self.gate = nn.Conv2d(c, c // 2, 1), nn.Conv2d(c // 2, c, 1), nn.Hardsigmoid()

        def forward(self, x):
            return x * self.gate(self.expand(torch.relu(self.reduce(x.mean((2, 3), keepdim=True)))))

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Hardswish(), SE(8), SE(8)).eval(), torch.randn(1, 3, 16, 16)


CASES = {"layernorm2d-as-conv": (convnext_like, 2)}  # hardsigmoid-as-hardtanh is int8 only: its own test below


@pytest.mark.parametrize("name", list(CASES))
def test_conv_rewrite_keeps_outputs_and_leaves_nothing_outside(tmp_path, name):
    from pocketvit.export.executorch import export_executorch
    from pocketvit.export.prepare import prepare_for_export

    make, count = CASES[name]
    model, x = make()
    ref = eager(model, x)
    others = tuple(r.name for r in REWRITES if r.name != name)
    rewritten = prepare_for_export(model)
    assert apply_rewrites(rewritten, "executorch", disabled=others) == {name: count}
    np.testing.assert_allclose(eager(rewritten, x), ref, atol=1e-5)

    without = export_executorch(model, x, tmp_path / "without.pte", disabled_rewrites=("all",)).info
    with_it = export_executorch(model, x, tmp_path / "with.pte", disabled_rewrites=others)
    assert with_it.info["rewrites"] == {name: count}
    assert with_it.info["nodes_outside"] == 0 < without["nodes_outside"]
    assert with_it.info["delegate_calls"] == 1 <= without["delegate_calls"]
    out = RUNNERS["executorch"](with_it.path, x)
    assert float(np.abs(out - ref).max()) < 1e-4


@pytest.mark.parametrize("name", ["depthwise7-as-core-ring", "depthwise7-as-5x5"])
def test_depthwise7_rewrites_stay_in_one_delegate_call(tmp_path, name):
    """core-ring (5x5 + two dilated border convs) and the 5x5 split (four kernels as separate constants: a
    stacked buffer indexed per window left select_copy + convolution outside, 13 calls on ConvNeXt-atto):
    one delegate call, same outputs; with core-ring on, the split finds nothing left to take."""
    from pocketvit.export.executorch import export_executorch

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 7, padding=3, groups=8), nn.Conv2d(8, 8, 1)).eval()
    x = torch.randn(1, 3, 12, 16)
    off = ("layernorm2d-as-conv",) + (("depthwise7-as-core-ring",) if name == "depthwise7-as-5x5" else ())
    f = export_executorch(model, x, tmp_path / "m.pte", disabled_rewrites=off)
    assert f.info["rewrites"] == {name: 1}
    assert (f.info["delegate_calls"], f.info["nodes_outside"]) == (1, 0)
    assert float(np.abs(RUNNERS["executorch"](f.path, x) - eager(model, x)).max()) < 1e-4


def test_slow_int8_depthwise_picks_depthwise_convs_larger_than_3x3():
    from pocketvit.export.quantize.executorch import slow_int8_depthwise

    model = nn.Sequential(nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 16, 7, stride=2, groups=8),
                          nn.Conv2d(8, 8, 5, groups=8), nn.Conv2d(8, 8, 5, groups=4), nn.Conv2d(8, 8, 5))
    assert slow_int8_depthwise(model) == ["1", "2"]


def _kernel_dtypes(path, shape: tuple[int, ...]) -> set[str]:
    from pocketvit.export.quantize.contents import pte_contents

    return {t["dtype"] for t in pte_contents(path)["tensors"]
            if sorted(t["shape"]) == sorted(shape) and not t["where"].startswith("program")}  # inside the delegate


@pytest.mark.parametrize("on", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_int8_keeps_large_depthwise_convs_float(tmp_path, on):
    """ExecuTorch int8 (PT2E) takes layernorm2d-as-conv and depthwise7-as-core-ring (one delegate call), and
    with float_depthwise (default) the 7x7's 5x5 core kernel stays float32 inside it; switched off, int8."""
    from pocketvit.export.quantize import config_for, quantize_export

    model, x = convnext_like()
    calib = torch.randn(8, *x.shape[1:], generator=torch.Generator().manual_seed(1))
    ref = eager(model, x)
    f = quantize_export(model, x, calib, config_for("executorch-int8", float_depthwise=on), tmp_path / "int8.pte")
    assert f.info["float_depthwise"] == int(on)
    assert f.info["rewrites"] == {"layernorm2d-as-conv": 2, "depthwise7-as-core-ring": 1}
    assert (f.info["delegate_calls"], f.info["nodes_outside"]) == (1, 0)
    assert _kernel_dtypes(f.path, (16, 1, 5, 5)) == ({"fp32"} if on else {"int8 (per-channel)"})
    out = RUNNERS["executorch"](f.path, x)
    assert np.dot(out.ravel(), ref.ravel()) / (np.linalg.norm(out) * np.linalg.norm(ref)) > 0.9


def _xnn_node_outputs(path) -> list[tuple[str, str]]:
    """(node type, output datatype) of every XNNPACK node in the .pte's delegates, in order."""
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader
    from executorch.exir._serialize._program import deserialize_pte_binary
    from pocketvit.export.quantize.contents import _xnn_graph_json

    program, nodes = deserialize_pte_binary(path.read_bytes()).program, []
    for plan in program.execution_plan:
        for d in plan.delegates:
            blob = program.backend_delegate_data[d.processed.index].data
            h = XNNHeader.from_bytes(blob[:XNNHeader.EXPECTED_LENGTH])
            graph = _xnn_graph_json(blob[h.flatbuffer_offset:h.flatbuffer_offset + h.flatbuffer_size])
            values = [v["xvalue_union"].get("tensor_value", v["xvalue_union"]) for v in graph["xvalues"]]
            nodes += [(n["xnode_union_type"], values[n["xnode_union"]["output_id"]]["datatype"].removeprefix("xnn_datatype_"))
                      for n in graph.get("xnodes", []) if "output_id" in n["xnode_union"]]
    return nodes


@pytest.mark.parametrize("off, mul", [((), "qint8"), pytest.param(("silu-as-sigmoid-mul",), "fp32", marks=pytest.mark.slow)])
def test_silu_as_sigmoid_mul_takes_silu_into_int8(tmp_path, off, mul):
    """EfficientNet-like SiLUs: exact in float; in the int8 file SiLU's multiply runs in int8 (without the
    rewrite sigmoid and multiply both run float between converts); only for executorch-int8 (fp32 XNNPACK
    takes SiLU as is). On EfficientNet-B0 XNNPACK also gives most of the sigmoids an int8 lookup table."""
    from pocketvit.export.prepare import prepare_for_export
    from pocketvit.export.quantize import config_for, quantize_export

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.SiLU(), nn.Conv2d(8, 16, 1), nn.SiLU(),
                          nn.Conv2d(16, 8, 1)).eval()
    x = torch.randn(1, 3, 16, 16)
    rewritten = prepare_for_export(model)
    assert apply_rewrites(rewritten, "executorch-int8") == {"silu-as-sigmoid-mul": 2}
    assert "silu-as-sigmoid-mul" not in apply_rewrites(prepare_for_export(model), "executorch")
    np.testing.assert_allclose(eager(rewritten, x), eager(model, x), atol=1e-6)
    calib = torch.randn(8, *x.shape[1:], generator=torch.Generator().manual_seed(1))
    f = quantize_export(model, x, calib, config_for("executorch-int8", no_rewrite=off), tmp_path / "int8.pte")
    assert (f.info["delegate_calls"], f.info["nodes_outside"]) == (1, 0)
    assert [dt for t, dt in _xnn_node_outputs(f.path) if t == "XNNMultiply"] == [mul, mul]
    out, ref = RUNNERS["executorch"](f.path, x), eager(model, x)
    assert np.dot(out.ravel(), ref.ravel()) / (np.linalg.norm(out) * np.linalg.norm(ref)) > 0.95


def test_int8_takes_hardsigmoid_as_hardtanh(tmp_path):
    """In int8 too the squeeze-excite gates' int64 scalar copies leave the graph: one call, nothing outside."""
    from pocketvit.export.quantize import config_for, quantize_export

    model, x = squeeze_excite_like()
    calib = torch.randn(8, *x.shape[1:], generator=torch.Generator().manual_seed(1))
    f = quantize_export(model, x, calib, config_for("executorch-int8"), tmp_path / "int8.pte")
    assert f.info["rewrites"] == {"hardsigmoid-as-hardtanh": 2}
    assert (f.info["delegate_calls"], f.info["nodes_outside"]) == (1, 0)
    # layernorm_as_linear=False leaves out that rewrite only, not the others
    g = quantize_export(model, x, calib, config_for("executorch-int8", layernorm_as_linear=False), tmp_path / "b.pte")
    assert g.info["rewrites"] == {"hardsigmoid-as-hardtanh": 2}


def squeeze_excite_gates():
    """A timm SqueezeExcite and a torchvision SqueezeExcitation, both with a hardsigmoid gate (MobileNetV3's), and
    a timm one with a sigmoid gate (EfficientNet's; left alone)."""
    from timm.models._efficientnet_blocks import SqueezeExcite
    from torchvision.ops.misc import SqueezeExcitation

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Hardswish(), SqueezeExcite(16, gate_layer=nn.Hardsigmoid),
                          SqueezeExcitation(16, 8, scale_activation=nn.Hardsigmoid), SqueezeExcite(16)).eval()
    return model, torch.randn(1, 3, 12, 20)


def test_se_gate_into_conv_folds_the_hardsigmoid(tmp_path):
    from pocketvit.export.executorch import export_executorch
    from pocketvit.export.prepare import prepare_for_export

    model, x = squeeze_excite_gates()
    ref = eager(model, x)
    rewritten = prepare_for_export(model)
    assert apply_rewrites(rewritten, "executorch") == {"se-gate-into-conv": 2}
    assert [type(m.gate).__name__ for m in rewritten.modules() if hasattr(m, "conv_expand")] == ["Hardtanh", "Sigmoid"]
    for inputs in (x, 4 * torch.randn(2, 3, 9, 9)):  # gates saturated at 0 and 1 too
        np.testing.assert_allclose(eager(rewritten, inputs), eager(model, inputs), atol=1e-6)
    without = export_executorch(model, x, tmp_path / "without.pte", disabled_rewrites=("all",))
    with_it = export_executorch(model, x, tmp_path / "with.pte")
    assert with_it.info["rewrites"] == {"se-gate-into-conv": 2}
    assert with_it.info["nodes_outside"] == 0 < without.info["nodes_outside"]  # hardsigmoid's int64 scalar copies
    # the gate is the conv's output clamp: XNNPACK runs fewer nodes (no add / clamp / divide per gate)
    assert len(_xnn_node_outputs(with_it.path)) < len(_xnn_node_outputs(without.path))
    np.testing.assert_allclose(RUNNERS["executorch"](with_it.path, x), ref, atol=1e-5)
