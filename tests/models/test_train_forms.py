"""Training-time forms (models/train_forms.py): the same function as the plain model, only inside training, never
exported; and the trainer's fast path (form + fused AdamW) trains to the same model as the plain path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pocketvit.data.datasets import ImageSet, Splits
from pocketvit.distill.trainer import TrainSettings, make_optimizer, train
from pocketvit.models import build_model
from pocketvit.models.tinyvit import TinyViTStudent
from pocketvit.models.train_forms import TinyViTTrainForm, training_form

OPTIONS = {"stem_dim": 8, "dims": [16, 24], "depths": [2, 1], "heads": [2, 2], "mlp_ratio": 2.0}


@pytest.fixture(autouse=True)
def one_thread():
    """OpenMP on a busy 2-core machine can stall a step for seconds; the results do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _student(seed: int = 0) -> TinyViTStudent:
    torch.manual_seed(seed)
    m = build_model("pocketvit-tinyvit", 1, 10, 16, OPTIONS)
    with torch.no_grad():  # non-zero attention biases and BN affine, so every path carries signal
        for name, p in m.named_parameters():
            if name.endswith("attn.bias") or ".1.weight" in name:
                p.add_(0.3 * torch.randn_like(p))
    return m.to(memory_format=torch.channels_last).train()


def _forward_backward(model, x, y, fast: bool):
    model.zero_grad(set_to_none=True)
    with training_form(model, fast):
        logits = model(x)
        F.cross_entropy(logits, y).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_training_form_computes_the_same_logits_and_gradients():
    model = _student()
    x = torch.randn(12, 1, 16, 16).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (12,))
    plain_logits, plain_grads = _forward_backward(model, x, y, fast=False)
    fast_logits, fast_grads = _forward_backward(model, x, y, fast=True)
    assert torch.equal(plain_logits, fast_logits)  # the form only changes the backward's memory layout
    scale = max(float(g.abs().max()) for g in plain_grads.values())
    for name, g in plain_grads.items():
        torch.testing.assert_close(fast_grads[name], g, rtol=1e-5, atol=1e-6 * scale, msg=name)


def test_the_form_is_active_inside_and_gone_outside_even_on_error():
    model = _student()
    keys = list(model.state_dict())
    with training_form(model) as m:
        assert m is model and type(model) is TinyViTTrainForm
        assert list(model.state_dict()) == keys  # same parameters and buffers, same names: checkpoints unchanged
    assert type(model) is TinyViTStudent
    with pytest.raises(RuntimeError), training_form(model):
        raise RuntimeError("interrupted step")
    assert type(model) is TinyViTStudent
    with training_form(model, enabled=False):
        assert type(model) is TinyViTStudent
    wrapped = torch.nn.Sequential(model)  # a student inside another module (e.g. a CLIP image tower) gets it too
    with training_form(wrapped):
        assert type(wrapped[0]) is TinyViTTrainForm
    assert type(wrapped[0]) is TinyViTStudent


def _ops(model) -> list[str]:
    ep = torch.export.export(model.eval(), (torch.randn(1, 1, 16, 16),))
    return [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]


def test_trainer_uses_the_form_and_the_exported_graph_is_the_plain_models(tmp_path):
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (48, 1, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (48,), generator=g)
    data = ImageSet(images, labels)
    splits = Splits("synthetic", data, data.subset(np.arange(8)), data.subset(np.arange(8)),
                    [str(i) for i in range(10)], [0.5], [0.5], "GRAY")
    x_all = splits.normalize(images)
    models, seen = {}, {}
    for fast in (False, True):
        model = _student(seed=3)
        reference_ops = _ops(model) if fast else None

        def batches(epoch, fast=fast, model=model):
            seen[fast] = type(model)
            return ((x_all[i : i + 16], labels[i : i + 16]) for i in range(0, 48, 16))

        settings = TrainSettings(epochs=2, lr=1e-3, weight_decay=0.05, steps_per_epoch=3, fast=fast)
        models[fast] = train(model, batches, F.cross_entropy, settings, tmp_path / str(fast), "train")
        if fast:
            assert _ops(model) == reference_ops
    assert seen == {False: TinyViTStudent, True: TinyViTTrainForm}
    assert type(models[True]) is TinyViTStudent
    # the same training up to float rounding, which AdamW's first steps (about lr * sign(grad)) turn into up to
    # ~lr per weight where a gradient entry is near zero (the key biases have none at all: softmax ignores them);
    # the gradients themselves are compared exactly above. Training moved the outputs far more than that.
    with torch.no_grad():
        trained, plain, untrained = models[True](x_all), models[False](x_all), _student(seed=3).eval()(x_all)
    torch.testing.assert_close(trained, plain, rtol=0, atol=3e-3)
    assert (trained - untrained).abs().max() > 20 * (trained - plain).abs().max()


def test_fused_adamw_steps_like_the_for_loop_version():
    model_a, model_b = _student(), _student()
    opt_a = make_optimizer(model_a, 3e-3, 0.05, fused=False)
    opt_b = make_optimizer(model_b, 3e-3, 0.05, fused=True)
    assert opt_b.defaults["fused"] and not opt_a.defaults["fused"]
    for _ in range(5):
        for pa, pb in zip(model_a.parameters(), model_b.parameters()):
            grad = torch.randn_like(pa)
            pa.grad, pb.grad = grad.clone(), grad.clone()
        opt_a.step()
        opt_b.step()
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=1e-5, atol=1e-6)
    opt_b.load_state_dict(opt_a.state_dict())  # resume across the two kinds (checkpoints from before fast_train)


def test_recipe_key_switches_it_off_and_keeps_old_stage_hashes():
    from pocketvit.recipe.schema import DistillSection, stable_dump

    assert DistillSection().fast_train is True
    assert "fast_train" not in stable_dump(DistillSection())  # default on: finished distill stages stay valid
    assert stable_dump(DistillSection(fast_train=False))["fast_train"] is False  # off: a different stage
