"""A pretrained teacher fine-tuned on the data's classes, and unlabeled images distilled beside the labeled ones,
through the real pipeline: tiny image folders written here, timm's tiny test_efficientnet with weights saved here as the
pretrained teacher (1000 ImageNet classes, so fine-tuning gives it a new head), run at 32x32."""

from __future__ import annotations

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
from safetensors.torch import load_file, save_file

COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]


@pytest.fixture(scope="module")
def ckpt_file(tmp_path_factory) -> Path:
    import timm

    torch.manual_seed(0)
    teacher = timm.create_model("test_efficientnet", pretrained=False).eval()
    path = tmp_path_factory.mktemp("teacher") / "test_efficientnet.safetensors"
    save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, str(path))
    return path


def _image(rgb, rng) -> Image.Image:
    a = (np.array(rgb) + rng.integers(-50, 50, (20, 20, 3))).clip(0, 255).astype(np.uint8)
    return Image.fromarray(a)


def _folders(root: Path, per_class: int = 8, unlabeled: int = 12) -> tuple[Path, Path, Path]:
    """labeled/<class>/, unlabeled/ and test/<class>/: colour classes, noisy."""
    rng = np.random.default_rng(0)
    for part, n in (("labeled", per_class), ("test", 4)):
        for c, rgb in enumerate(COLOURS):
            (root / part / f"class{c}").mkdir(parents=True)
            for i in range(n):
                _image(rgb, rng).save(root / part / f"class{c}" / f"{i}.png")
    (root / "unlabeled").mkdir()
    for i in range(unlabeled):
        _image(COLOURS[i % 3], rng).save(root / "unlabeled" / f"u{i}.png")
    return root / "labeled", root / "unlabeled", root / "test"


def _recipe(tmp: Path, ckpt: Path, **over) -> Path:
    labeled, unlabeled, test = _folders(tmp / "imgs")
    r = {
        "name": "tiny-finetune", "seed": 0,
        "data": {"dataset": "image-folder", "root": str(labeled), "unlabeled": str(unlabeled),
                 "test_root": str(test), "image_size": 16, "val_fraction": 0.25},
        "teacher": {"arch": "timm:test_efficientnet", "checkpoint": str(ckpt), "pretrained": True, "finetune": True,
                    "options": {"input_size": 32},
                    "train": {"batch_size": 6, "epochs": 2, "min_steps": 0, "lr": 0.01, "patience": 1,
                              "probe_epochs": 1, "precision": "fp32", "layer_decay": 0.8}},
        "teacher_cache": {"epochs": 1, "topk": 2, "batch_size": 16},
        "student": {"arch": "pocketvit-tinyvit",
                    "options": {"stem_dim": 8, "dims": [16], "depths": [1], "heads": [1], "mlp_ratio": 2.0}},
        "distill": {"epochs": 2, "batch_size": 8, "min_steps": 0, "baseline": True, "baseline_in_parallel": False,
                    "cache_bench_steps": 0},
        "export": {"targets": ["executorch"]},
        "verify": {"latency_runs": 5, "threads": 1},
    }
    for key, value in over.items():
        node = r
        *parents, name = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[name] = value
    path = tmp / "r.yaml"
    path.write_text(yaml.safe_dump(r))
    return path


def test_finetuned_teacher_gets_a_head_for_the_data_and_the_unlabeled_images_reach_the_cache(tmp_path, ckpt_file):
    path = _recipe(tmp_path, ckpt_file)
    out = tmp_path / "run"
    report = run_build(load_recipe(path), path, out, until="baseline")
    # 8 files per class: 2 val, 6 train; 12 unlabeled images beside the 18 labeled ones; test from test_root
    t = report["teacher"]
    assert t["finetuned"] and 0.0 <= t["val_top1"] <= 1.0 and 0.0 <= t["test_top1"] <= 1.0
    teacher_dir = next((out / "stages").glob("teacher-*"))
    done = json.loads((teacher_dir / "done.json").read_text())["meta"]
    run = done["train"]
    assert run["steps_per_epoch"] == 3 and 1 <= run["epochs"] <= 2 and len(run["val_history"]) == run["epochs"]
    assert done["members_finetune"][0]["head"] == "new" and done["members_finetune"][0]["probe_val_top1"] is not None
    weights = load_file(str(teacher_dir / "teacher.safetensors"))
    head = [k for k, v in weights.items() if k.endswith("classifier.weight")]
    assert head and weights[head[0]].shape[0] == 3  # 3 classes, not ImageNet's 1000
    assert len(np.load(teacher_dir / "test_teacher_top1.npy")) == 12  # 4 test files per class from test_root
    # the cache holds the teacher's soft labels for the labeled and the unlabeled images
    idx = np.load(next((out / "stages").glob("teacher_cache-*/cache/epoch_000/rank_000")) / "index.npy")
    assert len(idx) == 18 + 12
    student = json.loads(next((out / "stages").glob("distill-*/done.json")).read_text())["meta"]
    base = json.loads(next((out / "stages").glob("baseline-*/done.json")).read_text())["meta"]
    # distill: 30 samples / 8 = 4 steps an epoch; the baseline trains its 18 labeled images for as many steps
    assert student["train"]["steps_per_epoch"] == 4 and base["train"]["steps_per_epoch"] == 3
    assert base["train"]["planned_epochs"] * 3 >= student["train"]["planned_epochs"] * 4
    assert 0.0 <= report["student"]["test_top1"] <= 1.0 and 0.0 <= student["test_teacher_agreement"] <= 1.0

    # a rerun reuses every stage; dropping the unlabeled images keeps the teacher (it never saw them)
    again = run_build(load_recipe(path), path, out, until="baseline")
    assert all(s["cached"] for s in again["stages"].values())
    fewer = run_build(load_recipe(path, ["data.unlabeled=null"]), path, out, until="distill")
    assert fewer["stages"]["teacher"]["cached"] and not fewer["stages"]["teacher_cache"]["cached"]


def test_finetuned_teacher_is_exported_and_measured_on_executorch(tmp_path, ckpt_file):
    path = _recipe(tmp_path, ckpt_file, **{"export.teacher": True, "teacher.train.probe_epochs": 0,
                                           "teacher.train.epochs": 1, "teacher.train.patience": None,
                                           "teacher.train.layer_decay": None})
    out = tmp_path / "run"
    report = run_build(load_recipe(path), path, out, until="teacher")
    et = report["teacher_targets"]["executorch"]
    # the .pte takes the student's 16x16 input and resizes to the teacher's 32x32 inside; same top-1 as eager
    assert et["parity"]["top1_agreement"] == 1.0 and et["test_top1"] == pytest.approx(report["teacher"]["test_top1"])
    assert report["warnings"] and "teacher trained for only 3 optimizer steps" in report["warnings"][0]


def test_labels_only_student_is_measured_on_the_runtime_beside_the_distilled_one(tmp_path, ckpt_file):
    path = _recipe(tmp_path, ckpt_file, **{"export.baseline": True, "teacher.train.probe_epochs": 0,
                                           "teacher.train.epochs": 1, "teacher.train.patience": None})
    out = tmp_path / "run"
    report = run_build(load_recipe(path), path, out, until="verify")
    base = report["baseline_targets"]["executorch"]
    # its own .pte, run on ExecuTorch over the test split: the same top-1 as the eager baseline
    assert base["parity"]["top1_agreement"] == 1.0
    assert base["test_top1"] == pytest.approx(report["baseline"]["test_top1"])
    assert next((out / "stages").glob("export-baseline-executorch-*/*.pte"))
    from pocketvit.report.text import teacher_training_markdown

    assert any("the labels-only student exported to executorch" in line for line in teacher_training_markdown(report))
    # without a labels-only student there is nothing to export: one message naming both keys
    no_base = _recipe(tmp_path / "b", ckpt_file, **{"export.baseline": True, "distill.baseline": False})
    with pytest.raises(RecipeError, match="export.baseline.*distill.baseline"):
        load_recipe(no_base)


def test_teacher_from_random_weights_is_the_control(tmp_path, ckpt_file):
    path = _recipe(tmp_path, ckpt_file, **{"teacher.init": "random", "teacher.train.epochs": 1})
    report = run_build(load_recipe(path), path, tmp_path / "run", until="teacher")
    meta = json.loads(next((tmp_path / "run" / "stages").glob("teacher-*/done.json")).read_text())["meta"]
    assert report["teacher"]["init"] == "random" and "probe_val_top1" not in meta["members_finetune"][0]
    ref = load_file(str(ckpt_file))
    got = load_file(str(next((tmp_path / "run" / "stages").glob("teacher-*")) / "teacher.safetensors"))
    assert not torch.allclose(got["model.conv_stem.weight"], ref["conv_stem.weight"], atol=1e-2)


def test_ensemble_members_are_fine_tuned_each(tmp_path, ckpt_file):
    path = _recipe(tmp_path, ckpt_file)
    r = yaml.safe_load(path.read_text())
    member = {"arch": "timm:test_efficientnet", "checkpoint": str(ckpt_file), "options": {"input_size": 32}}
    r["teacher"] = {"arch": "timm:test_efficientnet", "finetune": True, "ensemble": [member, member],
                    "train": {"batch_size": 6, "epochs": 1, "min_steps": 0, "probe_epochs": 1, "precision": "fp32"}}
    path.write_text(yaml.safe_dump(r))
    report = run_build(load_recipe(path), path, tmp_path / "run", until="teacher")
    meta = json.loads(next((tmp_path / "run" / "stages").glob("teacher-*/done.json")).read_text())["meta"]
    assert len(meta["members_finetune"]) == 2 and report["teacher"]["finetuned"]
    weights = load_file(str(next((tmp_path / "run" / "stages").glob("teacher-*")) / "teacher.safetensors"))
    assert {k.split(".")[1] for k in weights} == {"0", "1"}  # members.0..., members.1...


def test_open_clip_teacher_starts_from_its_zero_shot_head(tmp_path, ckpt_file):
    pytest.importorskip("open_clip")
    from tests.models.test_teachers import _tiny_open_clip

    clip = _tiny_open_clip(tmp_path / "clip")
    path = _recipe(tmp_path, ckpt_file)
    r = yaml.safe_load(path.read_text())
    r["teacher"] = {"arch": f"open_clip:{clip}", "finetune": True,
                    "train": {"batch_size": 6, "epochs": 1, "min_steps": 0, "probe_epochs": 1, "precision": "fp32"}}
    path.write_text(yaml.safe_dump(r))
    run_build(load_recipe(path), path, tmp_path / "run", until="teacher")
    meta = json.loads(next((tmp_path / "run" / "stages").glob("teacher-*/done.json")).read_text())["meta"]
    assert meta["members_finetune"][0]["head"] == "keep"  # the class prompts' head predicts the data's classes


def test_finetune_needs_labels_and_init_random_needs_finetune(tmp_path, ckpt_file):
    path = _recipe(tmp_path, ckpt_file, **{"teacher.finetune": False, "teacher.init": "random"})
    with pytest.raises(RecipeError, match="teacher.init: random .* needs teacher.finetune"):
        run_build(load_recipe(path), path, tmp_path / "run", until="teacher")
    flat = tmp_path / "flat"
    flat.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        _image(COLOURS[i % 3], rng).save(flat / f"{i}.png")
    r = yaml.safe_load(path.read_text())
    r["data"] = {"dataset": "image-folder", "root": str(flat), "image_size": 16, "views": 2}
    r["teacher"] |= {"finetune": True, "init": "pretrained"}
    path.write_text(yaml.safe_dump(r))
    with pytest.raises(RecipeError, match="teacher.finetune trains the teacher on the data's labels"):
        run_build(load_recipe(path), path, tmp_path / "run2", until="teacher")


def test_a_kept_head_must_match_the_data(tmp_path, ckpt_file):
    path = _recipe(tmp_path, ckpt_file, **{"teacher.head": "keep"})
    with pytest.raises(RecipeError, match="teacher.head: keep, but teacher timm:test_efficientnet predicts 1000"):
        run_build(load_recipe(path), path, tmp_path / "run", until="teacher")


def test_layer_decay_and_trainable_layers_count_layers_from_the_top():
    import timm
    from pocketvit.distill.finetune import (
        classifier_slot,
        freeze_below,
        layer_decay_scales,
        layer_of,
        new_head,
    )

    net = timm.create_model("test_efficientnet", pretrained=False)
    head = new_head(net, 3)
    assert classifier_slot(net)[2] is head and head.out_features == 3
    assert layer_of("blocks.1.0.conv_dw.weight") == "blocks.1" and layer_of("conv_stem.weight") == "conv_stem"
    scale = layer_decay_scales(net, head, 0.5, prefix="model.")  # names as the adapter around it sees them
    assert scale("model.classifier.weight") == 1.0
    top, stem = scale("model.bn2.weight"), scale("model.conv_stem.weight")
    assert top == 0.5 and stem < top and scale("model.blocks.0.0.conv_dw.weight") > stem
    frozen = freeze_below(net, head, 2)  # bn2 and conv_head train with the head; the rest is frozen
    trainable = {n.split(".")[0] for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"classifier", "bn2", "conv_head"} and any(isinstance(m, torch.nn.BatchNorm2d) for m in frozen)
