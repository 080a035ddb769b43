"""The sensitivity pass keeps a deliberately fragile layer in float; calibration never touches the test split."""

from __future__ import annotations

from collections import OrderedDict

import pytest

torch = pytest.importorskip("torch")
from torch import nn


def _fragile_model() -> nn.Module:
    """pre -> fragile -> head. `fragile` writes one output channel 1000x larger than the others (and `head`
    scales it back), so int8 with one scale per tensor wipes out the other channels of that activation:
    quantizing `fragile` (its output) or `head` (its input) is what breaks the model; `pre` is harmless."""
    torch.manual_seed(0)
    m = nn.Sequential(OrderedDict(pre=nn.Linear(8, 16), act=nn.ReLU(), fragile=nn.Linear(16, 16),
                                  head=nn.Linear(16, 4)))
    with torch.no_grad():
        m.fragile.weight[0] *= 1000.0
        m.fragile.bias[0] *= 1000.0
        m.head.weight[:, 0] /= 1000.0
    return m.eval()


def test_sensitivity_keeps_the_fragile_layer_in_float():
    from pocketvit.export.quantize.pt2e import xnnpack_quantizer
    from pocketvit.export.quantize.sensitivity import choose_float_layers

    m = _fragile_model()
    gen = torch.Generator().manual_seed(0)
    calib, held = torch.randn(64, 8, generator=gen), torch.randn(256, 8, generator=gen)
    r = choose_float_layers(m, calib[:1], calib, held, None, xnnpack_quantizer(), budget=0.02)
    ranked = [x["layer"] for x in r.ranking]
    assert set(ranked[:2]) == {"fragile", "head"}, r.ranking  # the two layers that quantize the wide tensor
    assert r.all_int8_top1 < 0.9  # all-int8 breaks it ...
    assert "fragile" in r.float_layers and "pre" not in r.float_layers  # ... mixed precision repairs it
    assert r.met and r.final_top1 >= 0.98
    assert [s["float_layers"] for s in r.steps] == list(range(len(r.float_layers) + 1))


def test_a_conv_with_batchnorm_is_quantized_when_ranked_alone():
    """Each conv of a conv+BatchNorm pair, quantized alone, moves the logits: BatchNorm folding gives the conv a
    weight constant without module metadata, which a module-name filter used to reject (every conv then
    ranked as harmless)."""
    from pocketvit.export.quantize.pt2e import export_graph, quantized_graph, xnnpack_quantizer

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.GELU(),
                      nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False), nn.BatchNorm2d(8), nn.Flatten(),
                      nn.Linear(8 * 4 * 4, 4)).eval()
    x = torch.rand(8, 1, 8, 8)
    ref = m(x)
    graph, batched = export_graph(m, x[:1], dynamic_batch=True)
    for name in ("0", "3"):  # the plain and the depthwise conv, each followed by its BatchNorm
        q = quantized_graph(m, x[:1], x, xnnpack_quantizer(), graph=graph, batched=batched, only=[name])
        quantized = [n for n in q.graph.nodes if "quantize_per" in str(n.target)]
        assert quantized, name
        assert not torch.equal(q(x[:1]), ref[:1]), name


def _splits():
    from pocketvit.data.datasets import ImageSet, Splits

    def images(n, value):
        return ImageSet(torch.full((n, 1, 8, 8), value, dtype=torch.uint8), torch.arange(n) % 10)

    return Splits(name="t", train=images(40, 10), val=images(20, 100), test=images(30, 250),
                  labels=[str(i) for i in range(10)], mean=[0.0], std=[1.0], color_order="GRAY")


def test_calibration_and_held_out_images_come_from_train_and_val_only():
    from pocketvit.export.quantize.calibration import calibration_images, held_out_images

    s = _splits()
    calib, idx = calibration_images(s, 16)
    assert len(calib) == 16 and idx.max() < 40
    assert torch.allclose(calib, torch.full_like(calib, 10 / 255))  # training pixels, never the test's 250
    hx, _ = held_out_images(s, 8)
    assert torch.allclose(hx, torch.full_like(hx, 100 / 255))


def test_calibration_refuses_the_test_split():
    from pocketvit.errors import DataError
    from pocketvit.export.quantize.calibration import calibration_images, held_out_images

    s = _splits()
    s.train = s.test
    with pytest.raises(DataError, match="test split"):
        calibration_images(s, 8)
    s = _splits()
    s.val = s.test
    with pytest.raises(DataError, match="test split"):
        held_out_images(s, 8)


def test_build_plan_draws_calibration_from_train(tmp_path):
    """The build's quantize-plan stage: indices saved, images read back from the training split."""
    from types import SimpleNamespace

    from pocketvit.export.quantize.calibration import plan_calibration
    from pocketvit.models.tinyvit import TinyViTConfig, TinyViTStudent
    from pocketvit.pipeline.stages.int8 import plan_stage_fn
    from pocketvit.recipe.schema import QuantizeSection

    s = _splits()
    q = QuantizeSection(calibration_images=12, sensitivity=False)
    torch.manual_seed(0)
    model = TinyViTStudent(TinyViTConfig(img_size=8, stem_dim=8, dims=[16], depths=[1], heads=[1])).eval()
    meta = plan_stage_fn(lambda: model, s, {"channels": 1, "height": 8, "width": 8}, q, seed=0)(tmp_path)
    assert meta["calibration"] == {"split": "train", "images": 12, "file": "calibration_indices.npy"}
    x = plan_calibration(SimpleNamespace(path=tmp_path, meta=meta), s)
    assert len(x) == 12 and torch.allclose(x, torch.full_like(x, 10 / 255))
    ps = meta["post_softmax"]  # what I&S-ViT's SULQ would buy on this model's attention
    assert ps["softmax_values"] > 0 and ps["8bit"]["sulq_mse"] <= ps["8bit"]["uniform_mse"]
