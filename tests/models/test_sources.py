"""Resolving MODEL for `pocketvit export`: names, checkpoints, preprocessing, labels, known-model list."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pocketvit.errors import RecipeError
from pocketvit.models.sources import (
    KNOWN_MODELS,
    apply_checkpoint,
    center_crop_input,
    load_checkpoint,
    resolve_model,
    unknown_model_message,
)

torch = pytest.importorskip("torch")
pytest.importorskip("timm")


def test_imagenet_labels_are_descriptions():
    from pocketvit.models.imagenet import imagenet_labels, labels_for

    labels = imagenet_labels()
    assert len(labels) == 1000 and labels[967] == "espresso" and labels[281] == "tabby, tabby cat"
    assert labels_for(1000) == labels
    assert labels_for(10) == [f"class_{i}" for i in range(10)]


def test_center_crop_input_follows_timm():
    spec = center_crop_input(224, 224, 3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 0.875)
    assert spec["resize"] == 256 and spec["crop"] == [224, 224] and spec["color_order"] == "RGB"
    assert center_crop_input(224, 224, 3, [0.5] * 3, [0.5] * 3, 0.9)["resize"] == 248  # floor, as timm
    assert center_crop_input(64, 96, 3, [0.5] * 3, [0.5] * 3, 1.0)["resize"] == [64, 96]
    gray = center_crop_input(28, 28, 1, [0.5] * 3, [0.25] * 3, None)
    assert gray["color_order"] == "GRAY" and gray["mean"] == [0.5] and gray["std"] == [0.25]


def test_timm_model_random_init_is_usable():
    m = resolve_model("timm:resnet10t", input_size=(64, 64))
    assert m.random_init and m.name == "resnet10t" and len(m.labels) == 1000
    assert m.input["height"] == 64 and m.input["resize"] == 73  # floor(64 / 0.875)
    assert m.input["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert m.source["arch"] == "timm:resnet10t" and m.source["options"] == {}
    # BatchNorm re-estimated: activations do not vanish, outputs differ between inputs
    with torch.no_grad():
        y = m.model(torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3)))
    assert float(y.std()) > 1e-2 and not torch.allclose(y[0], y[1])
    assert "random" in m.weights and "Apache-2.0" in m.license


@pytest.mark.slow
def test_timm_img_size_is_passed_when_the_model_takes_it():
    m = resolve_model("timm:deit_tiny_patch16_224", input_size=(64, 64), num_classes=10)
    assert m.source["options"] == {"img_size": [64, 64]} and len(m.labels) == 10
    from pocketvit.models import build_model  # the source block rebuilds a model that runs at 64x64

    src = m.source
    rebuilt = build_model(src["arch"], src["in_chans"], src["num_classes"], src["img_size"], src["options"])
    rebuilt.load_state_dict(m.model.state_dict())
    with torch.no_grad():
        assert rebuilt.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 10)


def test_unknown_names_suggest_close_matches():
    msg = unknown_model_message("resnet10")
    assert "timm:resnet10t" in msg and "--list-models" in msg
    msg = unknown_model_message("timm:mobilenetv3_smal_050")
    assert "timm:mobilenetv3_small_050" in msg
    assert "did you mean timm:resnet18?" in unknown_model_message("resnet18")
    assert "efficientnet-lite:lite0" in unknown_model_message("efficientnet-lite0")
    with pytest.raises(RecipeError, match="did you mean"):
        resolve_model("timm:resnet10x")


def test_path_like_names_and_misused_options_are_clear(tmp_path):
    with pytest.raises(RecipeError, match="no such build directory or checkpoint"):
        resolve_model(str(tmp_path / "nope"))
    with pytest.raises(RecipeError, match="needs --arch"):
        f = tmp_path / "w.safetensors"
        f.write_bytes(b"x")
        resolve_model(str(f))
    with pytest.raises(RecipeError, match="pass its weights with --checkpoint"):
        resolve_model("pocketvit-tinyvit")
    with pytest.raises(RecipeError, match="not a build directory"):
        resolve_model(str(tmp_path))


def test_checkpoint_weights_only_pth_is_read_and_pickles_are_refused(tmp_path):
    net = torch.nn.Linear(3, 2)
    plain = tmp_path / "plain.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, plain)
    state = load_checkpoint(plain)
    assert set(state) == {"weight", "bias"}
    apply_checkpoint(torch.nn.Linear(3, 2), state, plain, "Linear")

    pickled = tmp_path / "model.pth"
    torch.save(net, pickled)  # a whole pickled module: needs arbitrary unpickling
    with pytest.raises(RecipeError) as ei:
        load_checkpoint(pickled)
    assert "safetensors" in str(ei.value) and "weights_only=True" in str(ei.value)

    with pytest.raises(RecipeError, match="shape mismatch"):
        apply_checkpoint(torch.nn.Linear(3, 5), state, plain, "Linear(3, 5)")


def test_known_models_match_the_timm_export_tests():
    """--list-models must not claim more than tests/export/test_export_timm.py checks."""
    src = (Path(__file__).resolve().parents[1] / "export" / "test_export_timm.py").read_text()
    tree = ast.parse(src)
    tested = next([k.value for k in n.value.keys] for n in tree.body
                  if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "MODELS")
    coreml = next(ast.literal_eval(n.value) for n in tree.body
                  if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "COREML_MODELS")
    for m in KNOWN_MODELS:
        if m.kind != "timm":
            continue
        name = m.name.split(":", 1)[1]
        for target in ("executorch", "litert", "onnx"):
            if m.status[target] == "ok":
                assert name in tested, (name, target)
        if m.status["coreml"] != "untested":
            assert name in coreml, name
    assert {f"timm:{n}" for n in tested} <= {m.name for m in KNOWN_MODELS}
