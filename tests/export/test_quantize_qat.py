"""QAT (prepare_qat_pt2e) on a tiny TinyViT: the lowered .pte runs on ExecuTorch and agrees with the QAT
model's simulated output; `auto` skips QAT when PTQ meets the budget; QAT never trains on the test split."""

from __future__ import annotations

import numpy as np
import pytest
from export_testkit import spread_tiny_vit

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny():
    m, gen = spread_tiny_vit()
    train_x = torch.randn(64, 1, 16, 16, generator=gen)
    train_y = torch.randint(0, 10, (64,), generator=gen)
    probe = torch.randn(48, 1, 16, 16, generator=gen)
    return m, train_x, train_y, probe


def test_qat_file_runs_on_executorch_and_agrees_with_the_simulated_qat_model(tiny, tmp_path):
    import torch.nn.functional as F
    from pocketvit.export.quantize import ExecuTorchInt8, quantize_export
    from pocketvit.export.quantize.qat import QATSettings, qat_finetune
    from pocketvit.runtime.backends import open_backend

    model, x, y, probe = tiny

    def batches(epoch):
        for i in range(0, len(x), 16):
            yield x[i:i + 16], y[i:i + 16]

    before = {k: v.clone() for k, v in model.state_dict().items()}
    trained, graph, losses = qat_finetune(model, probe[:1], batches, F.cross_entropy, QATSettings(epochs=1, lr=1e-3),
                                          steps_per_epoch=4)
    assert len(losses) == 1 and np.isfinite(losses[0])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the caller's model untouched
    moved = [k for k, v in trained.state_dict().items() if k in before and not torch.equal(v, before[k])]
    assert any(k.endswith("weight") for k in moved), "QAT did not change any weight"

    f = quantize_export(trained, probe[:1], x, ExecuTorchInt8(), tmp_path / "qat.pte")
    b = open_backend("executorch", f.path, num_threads=1)
    out = b.run(probe.numpy())
    b.close()
    with torch.no_grad():
        sim = graph(probe).numpy()  # the fake-quant graph: the QAT model's simulated int8 output
    cos = (out * sim).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(sim, axis=1))
    agree = float((out.argmax(1) == sim.argmax(1)).mean())
    assert agree >= 0.85 and cos.min() >= 0.9, (agree, cos.min())


def test_auto_skips_qat_when_ptq_meets_the_budget(tiny):
    from pocketvit.export.quantize.qat import decide, ptq_scores

    model, x, _, probe = tiny
    s = ptq_scores(model, probe[:1], x, probe, None)  # no labels: top-1 vs the float model's own predictions
    assert s["fp32_top1"] == 1.0 and 0 <= s["top1"] <= 1 and s["agreement"] == s["top1"]
    ran, why = decide("auto", s, budget=0.5, min_agreement=0.0)
    assert not ran and "met" in why
    ran, why = decide("auto", s | {"top1": s["fp32_top1"] - 0.02}, budget=0.01, min_agreement=0.0)
    assert ran and "missed" in why
    assert decide("always", s, budget=0.5, min_agreement=0.0)[0]
    assert not decide("never", s | {"top1": 0.0}, budget=0.0, min_agreement=1.0)[0]


def test_qat_refuses_the_test_split():
    from pocketvit.errors import DataError
    from pocketvit.pipeline.stages.qat import _training
    from pocketvit.recipe.schema import Recipe

    from tests.export.test_quantize_sensitivity import _splits

    s = _splits()
    s.train = s.test
    with pytest.raises(DataError, match="test split"):
        _training(Recipe(name="t"), s, None)


def test_label_batches_come_from_the_training_split():
    from pocketvit.pipeline.stages.qat import _training
    from pocketvit.recipe.schema import Recipe

    from tests.export.test_quantize_sensitivity import _splits

    s = _splits()
    batches, _, what = _training(Recipe(name="t"), s, None)
    seen = torch.cat([xb for xb, _ in batches(0)])
    assert what.startswith("labels") and len(seen) == 40
    assert torch.allclose(seen, torch.full_like(seen, 10 / 255))  # training pixels, never the test's 250


def test_report_says_whether_qat_ran_and_the_palettized_size():
    from pocketvit.report.int8 import qat_and_palettize_lines

    qat = {"mode": "auto", "ran": True, "reason": "all-int8 PTQ ... missed, so QAT ran", "epochs": 1,
           "loss": "distillation (teacher cache, T=2)", "float_layers": [],
           "before": {"fp32_top1": 0.92, "top1": 0.90, "agreement": 0.97}, "after": {"top1": 0.915},
           "used": True, "use": "QAT weights used: budget met with 0 layer(s) in float (PTQ: 2, met)"}
    pal = {"palettized_weight_ops": 15, "weights": "palettized, 6-bit k-means lookup table per weight tensor",
           "bytes": 40960, "size_vs_fp16": 0.4}
    report = {"targets": {"executorch-int8": {"export_info": {"qat": qat}}, "litert-int8": {"export_info": {"qat": qat}},
                          "coreml-int8": {"export_info": pal}}}
    text = " ".join(qat_and_palettize_lines(report))
    assert "QAT (quantize.qat: auto): ran" in text and "0.9000 after PTQ, 0.9150 after 1 QAT epoch(s)" in text
    assert "applies to executorch-int8, litert-int8" in text and "QAT weights used" in text
    assert "40 KB, 0.40x of the fp16 package" in text and "not executed" in text
    skipped = qat | {"ran": False, "reason": "met, so QAT was not needed"}
    text = " ".join(qat_and_palettize_lines({"targets": {"executorch-int8": {"export_info": {"qat": skipped}}}}))
    assert "did not run — met" in text and "after PTQ" not in text


def test_fp32_teacher_targets_are_the_float_students_logits_on_training_images():
    from pocketvit.models.tinyvit import TinyViTConfig, TinyViTStudent
    from pocketvit.pipeline.stages.qat import _training
    from pocketvit.recipe.schema import Recipe

    from tests.export.test_quantize_sensitivity import _splits

    torch.manual_seed(0)
    model = TinyViTStudent(TinyViTConfig(img_size=8, stem_dim=8, dims=[16], depths=[1], heads=[1])).eval()
    recipe = Recipe(name="t")
    recipe.quantize.qat_teacher = "fp32"
    batches, loss, what = _training(recipe, _splits(), None, lambda: model)
    x, target = next(iter(batches(0)))
    assert torch.is_grad_enabled()  # the generator must not leave training under no_grad
    assert "fp32 student" in what and torch.allclose(x, torch.full_like(x, 10 / 255))
    with torch.no_grad():
        assert torch.allclose(target, model(x), atol=1e-5)
        same, other = loss(target, target), loss(-target, target)
    assert torch.isfinite(same) and other > same


def test_qat_weights_are_kept_only_when_they_beat_ptq_against_fp32():
    from pocketvit.export.quantize.qat import keep_qat

    good = {"fp32_top1": 0.92, "final_top1": 0.918, "final_agreement": 0.992}
    assert keep_qat(good, 0, ptq_met=True, ptq_float=1, budget=0.005, min_agreement=0.99)[0]  # fewer float layers
    assert keep_qat(good, 2, ptq_met=False, ptq_float=5, budget=0.005, min_agreement=0.99)[0]  # PTQ missed
    used, why = keep_qat(good, 1, ptq_met=True, ptq_float=1, budget=0.005, min_agreement=0.99)
    assert not used and "keep PTQ" in why
    # the fine-tuned weights disagree with the fp32 student: no float layer can fix that
    used, why = keep_qat(good | {"final_agreement": 0.983}, 22, ptq_met=True, ptq_float=1, budget=0.005,
                         min_agreement=0.99)
    assert not used and "agreement 0.9830" in why
