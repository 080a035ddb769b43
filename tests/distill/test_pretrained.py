"""Label-free builds: an image folder with no labels, a teacher used as it comes (timm weights saved here),
the TinyViT cache over the teacher's 1000 classes, and teacher agreement instead of label accuracy."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from pocketvit.errors import RecipeError
from pocketvit.pipeline.classify import run_build
from pocketvit.recipe import load_recipe
from safetensors.torch import save_file


def _folder(root: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):  # smooth random colour fields: photo-like enough for crops to differ
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((48, 40), Image.Resampling.BICUBIC).save(root / f"p{i}.png")
    return root


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory) -> Path:
    """timm's tiny test_vit (ImageNet-1k head), random weights saved as safetensors: a teacher used as it comes."""
    import timm

    torch.manual_seed(0)
    teacher = timm.create_model("test_vit", pretrained=False).eval()
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, str(path))
    return path


def _recipe(tmp: Path, ckpt: Path, **over) -> Path:
    r = {
        "name": "tiny-label-free", "seed": 0,
        "data": {"dataset": "image-folder", "root": str(_folder(tmp / "photos")), "image_size": 24, "views": 4,
                 "augment": {"crop_scale": [0.3, 1.0], "randaug_ops": 2}},
        "teacher": {"arch": "timm:test_vit", "checkpoint": str(ckpt), "pretrained": True},
        "teacher_cache": {"epochs": 2, "topk": 5, "batch_size": 32},
        "student": {"arch": "pocketvit-tinyvit",
                    "options": {"stem_dim": 8, "dims": [16], "depths": [1], "heads": [1], "mlp_ratio": 2.0}},
        "distill": {"epochs": 2, "batch_size": 8, "baseline": True},
        "export": {"targets": ["executorch"]},
        "verify": {"latency_runs": 5, "threads": 1},
    }
    for key, value in over.items():
        section, name = key.split(".")
        r[section][name] = value
    path = tmp / "r.yaml"
    path.write_text(yaml.safe_dump(r))
    return path


def test_label_free_distillation_reports_teacher_agreement(tmp_path, teacher_ckpt):
    path = _recipe(tmp_path, teacher_ckpt)
    out = tmp_path / "run"
    report = run_build(load_recipe(path), path, out, until="distill")
    s = report["student"]
    assert s["test_top1"] is None and s["val_top1"] is None
    assert 0.0 <= s["test_teacher_agreement"] <= 1.0 and "val_teacher_agreement" in s
    teacher_dir = next((out / "stages").glob("teacher-*"))
    pred = np.load(teacher_dir / "test_teacher_top1.npy")
    assert len(pred) == 1 * 4 and pred.max() < 1000  # 1 held-out photo (of 6) x 4 crops, ImageNet classes
    idx = np.concatenate([np.load(p) for p in sorted((out / "stages").glob("teacher_cache-*/cache/epoch_*/rank_*/"
                                                                           "topk_idx.npy"))])
    assert idx.shape[1] == 5 and idx.max() >= 10  # sparse targets over the teacher's 1000 classes
    again = run_build(load_recipe(path), path, out, until="distill")
    assert all(st["cached"] for st in again["stages"].values())
    assert again["student"]["test_teacher_agreement"] == s["test_teacher_agreement"]


def test_label_free_data_needs_a_teacher_used_as_it_comes(tmp_path, teacher_ckpt):
    path = _recipe(tmp_path, teacher_ckpt, **{"teacher.pretrained": False})
    data = yaml.safe_load(path.read_text())
    data["teacher"] = {"arch": "pocketvit-resnet"}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RecipeError, match="has no labels, so the build cannot train a teacher"):
        run_build(load_recipe(path), path, tmp_path / "run")


def test_label_free_data_refuses_label_measured_stages(tmp_path, teacher_ckpt):
    path = _recipe(tmp_path, teacher_ckpt, **{"export.targets": ["executorch", "onnx-int8"]})
    with pytest.raises(RecipeError, match="onnx-int8: int8 budgets and exit calibration"):
        run_build(load_recipe(path), path, tmp_path / "run")


def test_pretrained_teacher_classes_must_match_labeled_data(tmp_path, teacher_ckpt):
    path = _recipe(tmp_path, teacher_ckpt)
    data = yaml.safe_load(path.read_text())
    root = Path(data["data"]["root"])
    for i, p in enumerate(sorted(root.glob("*.png"))):  # two class folders
        (root / f"c{i % 2}").mkdir(exist_ok=True)
        p.rename(root / f"c{i % 2}" / p.name)
    with pytest.raises(RecipeError, match="predicts 1000 classes but .* has 2 class folders"):
        run_build(load_recipe(path), path, tmp_path / "run")


@pytest.mark.slow
def test_label_free_build_through_executorch_measures_agreement_on_the_runtime(tmp_path, teacher_ckpt):
    from pocketvit.runtime import load

    path = _recipe(tmp_path, teacher_ckpt)
    out = tmp_path / "run"
    report = run_build(load_recipe(path), path, out)
    et = report["targets"]["executorch"]
    assert et["test_top1"] is None and 0.0 <= et["teacher_agreement"] <= 1.0
    assert et["parity"]["top1_agreement"] >= 0.99
    assert report["baseline"] is None and report["dataset"]["labeled"] is False
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert len(manifest["labels"]) == 1000 and manifest["labels"][1].startswith("goldfish")
    assert manifest["metrics"]["executorch"]["teacher_agreement"] == et["teacher_agreement"]
    assert "Teacher agreement" in (out / "report.md").read_text()
    # the figure is reproducible from the bundle alone: the .pte on the held-out crops vs the teacher's top-1
    from pocketvit.data import load_dataset

    splits = load_dataset(load_recipe(path).data, 0)
    teacher_top1 = np.load(next((out / "stages").glob("teacher-*")) / "test_teacher_top1.npy")
    p = load(out / "bundle", target="executorch")
    labels = [p.predict(img.permute(1, 2, 0).numpy(), input_color="RGB").label for img in splits.test.images]
    agree = np.mean([manifest["labels"].index(lab) == t for lab, t in zip(labels, teacher_top1)])
    assert agree == pytest.approx(et["teacher_agreement"], abs=1e-9)


def _labeled_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for c, rgb in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(5):
            a = (np.array(rgb) + rng.integers(-40, 40, (20, 20, 3))).clip(0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / f"class{c}" / f"{i}.png")
    return root


def _small(recipe: dict) -> dict:
    recipe["data"] |= {"image_size": 16, "views": 2}
    recipe["distill"] |= {"epochs": 1}
    recipe["teacher_cache"] |= {"topk": 2}  # 3 classes
    return recipe


def test_labeled_image_folder_with_a_trained_teacher(tmp_path, teacher_ckpt):
    path = _recipe(tmp_path, teacher_ckpt)
    r = _small(yaml.safe_load(path.read_text()))
    r["data"]["root"] = str(_labeled_folder(tmp_path / "classes"))
    r["teacher"] = {"arch": "pocketvit-resnet", "options": {"widths": [8, 8, 8], "depths": [1, 1, 1]},
                    "train": {"epochs": 1, "batch_size": 8}}
    path.write_text(yaml.safe_dump(r))
    report = run_build(load_recipe(path), path, tmp_path / "run", until="baseline")
    s = report["student"]
    assert 0.0 <= s["test_top1"] <= 1.0 and "test_teacher_agreement" not in s  # no pretrained teacher: no agreement


def test_labeled_image_folder_with_an_open_clip_zero_shot_teacher(tmp_path, teacher_ckpt):
    pytest.importorskip("open_clip")
    from tests.models.test_teachers import _tiny_open_clip

    path = _recipe(tmp_path, teacher_ckpt)
    r = _small(yaml.safe_load(path.read_text()))
    r["data"]["root"] = str(_labeled_folder(tmp_path / "classes"))
    r["teacher"] = {"arch": f"open_clip:{_tiny_open_clip(tmp_path / 'clip')}", "options": {"prompt": "a {} photo"}}
    path.write_text(yaml.safe_dump(r))
    report = run_build(load_recipe(path), path, tmp_path / "run", until="distill")
    s = report["student"]
    assert 0.0 <= s["test_top1"] <= 1.0 and 0.0 <= s["test_teacher_agreement"] <= 1.0
    assert len(np.load(next((tmp_path / "run" / "stages").glob("teacher-*")) / "test_teacher_top1.npy")) == 6
