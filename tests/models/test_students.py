"""The issue's student families as `student.arch: timm:NAME`: built at the data's size, trained, prepared for export."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

STUDENTS = ["timm:tiny_vit_5m_224", "timm:tiny_vit_11m_224", "timm:tiny_vit_21m_224", "timm:fastvit_mci0",
            "timm:deit_tiny_patch16_224", "timm:deit_small_patch16_224", "timm:mobilenetv3_large_100"]


@pytest.mark.parametrize("arch", STUDENTS)
def test_timm_student_trains_and_prepares_for_export(arch):
    from pocketvit.export.prepare import prepare_for_export
    from pocketvit.models import build_model

    torch.manual_seed(0)
    model = build_model(arch, 1, 10, 64, {})  # grey 64x64 images, 10 classes; ViTs get img_size=64 themselves
    x, y = torch.randn(4, 1, 64, 64), torch.tensor([0, 1, 2, 3])
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    torch.nn.functional.cross_entropy(model.train()(x), y).backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with torch.no_grad():
        ref = model.eval()(x)
        prepared = prepare_for_export(model)  # MCi: its MobileOne / RepMixer branches folded
        assert ref.shape == (4, 10)
        np.testing.assert_allclose(prepared(x).numpy(), ref.numpy(), atol=1e-4)
    if "deit" in arch:
        assert tuple(model.patch_embed.grid_size) == (4, 4)


def test_timm_student_keeps_an_explicit_img_size():
    from pocketvit.models import build_model

    assert tuple(build_model("timm:deit_tiny_patch16_224", 3, 10, 64, {"img_size": 32}).patch_embed.grid_size) == (2, 2)


@pytest.mark.slow
def test_build_distills_into_a_timm_tinyvit(tmp_path, fmnist_root):
    """The tiny recipe with timm's TinyViT-5M as the student: distilled from the cache, exported, measured on
    ExecuTorch (28x28 Fashion-MNIST: TinyViT pads its windows)."""
    import json

    from pocketvit.pipeline.classify import run_build
    from pocketvit.recipe import load_recipe

    from tests.conftest import TINY

    recipe = load_recipe(TINY, ["student.arch=timm:tiny_vit_5m_224", "student.options={}", "distill.baseline=false"])
    run_build(recipe, TINY, tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["student"]["params"] > 5e6
    et = report["targets"]["executorch"]
    assert et["parity"]["top1_agreement"] >= 0.99 and 0.0 <= et["test_top1"] <= 1.0
