"""A tiny CLIP build end to end through `run_build` (the `clip:` hook): tiny text encoder, tiny teacher, ONNX."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.conftest import ROOT, run_cli

TINY_CLIP = ROOT / "tests" / "fixtures" / "tiny-clip.yaml"
SDK_ENV = {"PYTHONPATH": os.pathsep.join([str(ROOT / "sdk"), os.environ.get("PYTHONPATH", "")])}


def test_report_gives_zero_shot_on_the_runtime(clip_build):
    out, _report = clip_build
    saved = json.loads((out / "report.json").read_text())
    zs = saved["zero_shot"]["onnx"]
    for key in ("test_top1", "heldout_top1", "heldout_top1_among_heldout", "seen_top1"):
        assert 0.0 <= zs[key] <= 1.0
    t = saved["targets"]["onnx"]
    assert t["parity"]["cosine"] > 0.999 and t["within_tolerance"]
    assert abs(t["test_top1"] - t["eager_test_top1"]) <= 1 / 120 + 1e-9
    assert saved["clip"]["reinforced"]["teachers"] == 2 and saved["clip"]["heldout_classes"] == ["Sandal", "Bag"]
    # the held-out classes never reach training: their images are not in the reinforced dataset
    idx = np.load(next(out.glob("stages/clip-reinforce-*/reinforced/index.npy")))
    from pocketvit.data import load_dataset
    from pocketvit.recipe import load_recipe

    splits = load_dataset(load_recipe(TINY_CLIP, check_paths=False).data, 0)
    assert not np.isin(splits.train.labels.numpy()[idx], [5, 8]).any()
    assert "Zero-shot" in (out / "report.md").read_text()


def test_bundle_is_zero_shot_and_the_runtime_matches_eager(clip_build):
    out, _ = clip_build
    bundle = out / "bundle"
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["task"] == "zero-shot" and m["outputs"] == "embedding" and m["text_embeddings"] == "text_embeddings.npy"
    text = np.load(bundle / "text_embeddings.npy")
    assert text.shape == (10, 32) and np.allclose(np.linalg.norm(text, axis=1), 1, atol=1e-5)

    import torch
    from pocketvit.data import load_dataset
    from pocketvit.models import from_source
    from pocketvit.recipe import load_recipe
    from pocketvit.runtime import load

    splits = load_dataset(load_recipe(TINY_CLIP, check_paths=False).data, 0)
    images = splits.test.images[:16]
    with torch.no_grad():
        emb = from_source(m["source"], bundle)(splits.normalize(images)).numpy()
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)  # the exported model's output is normalised
    sims = emb @ text.T
    p = load(bundle, target="onnx")
    got = [p.predict(img[0].numpy(), input_color="GRAY") for img in images]
    for g, e, s in zip(got, emb, sims):
        assert np.allclose(np.ravel(g.embedding), e, atol=1e-5)  # the runtime's embedding is eager's
        # the runtime's label is eager's best class; the tiny random text encoder gives several classes
        # cosines equal to float precision, and then any of the tied classes is a right answer
        assert m["labels"].index(g.label) in np.flatnonzero(s >= s.max() - 1e-5)
    assert all(abs(float(np.linalg.norm(g.embedding)) - 1) < 1e-5 and len(g.topk) == 5 for g in got)


def test_cli_predict_and_verify_on_the_zero_shot_bundle(clip_build, tmp_path):
    out, _ = clip_build
    import cv2
    from pocketvit.data import load_dataset
    from pocketvit.recipe import load_recipe

    splits = load_dataset(load_recipe(TINY_CLIP, check_paths=False).data, 0)
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), splits.test.images[0, 0].numpy())
    r = run_cli("predict", str(out / "bundle"), str(img), env=SDK_ENV)
    assert r.returncode == 0, r.stderr
    assert any(lbl in r.stdout for lbl in splits.labels)
    r = run_cli("verify", str(out / "bundle"), "--json", env=SDK_ENV)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["targets"]["onnx"]["status"] == "pass"


def test_tampered_text_embeddings_are_refused(clip_build, tmp_path):
    import shutil

    from pocketvit.errors import BundleError
    from pocketvit.runtime import load

    out, _ = clip_build
    copy = tmp_path / "bundle"
    shutil.copytree(out / "bundle", copy)
    t = np.load(copy / "text_embeddings.npy")
    np.save(copy / "text_embeddings.npy", t[::-1].copy())
    with pytest.raises(BundleError, match="text_embeddings.npy"):
        load(copy, target="onnx")


def test_unknown_heldout_class_is_one_clear_error(tiny_text_folder, tiny_resnet_ckpt, tmp_path):
    from pocketvit.errors import RecipeError
    from pocketvit.pipeline.classify import run_build
    from pocketvit.recipe import load_recipe

    r = load_recipe(TINY_CLIP, [f"clip.text_teacher=hf:{tiny_text_folder}", "clip.heldout_classes=[Sock]"])
    with pytest.raises(RecipeError, match="clip.heldout_classes.*Sock"):
        run_build(r, TINY_CLIP, tmp_path)


def test_open_clip_text_teacher_and_its_image_tower_in_the_ensemble(tiny_open_clip, tiny_resnet_ckpt, tmp_path):
    """open_clip as text + image teacher: its own tower (own preprocessing, no projection) next to a LiT ResNet."""
    from pocketvit.clip.reinforce import ReinforcedData
    from pocketvit.pipeline.classify import run_build
    from pocketvit.recipe import load_recipe

    arch, ckpt = tiny_open_clip
    r = load_recipe(TINY_CLIP, [f"clip.text_teacher=open_clip:{arch}", f"clip.text_checkpoint={ckpt}",
                                f"clip.image_teachers=[open_clip, {tiny_resnet_ckpt}]"])
    report = run_build(r, TINY_CLIP, tmp_path, until="clip-distill")
    assert 0.0 <= report["student"]["test_top1"] <= 1.0
    stages = tmp_path / "stages"
    assert [p.name for p in next(stages.glob("clip-image-teacher-*")).glob("proj-*.safetensors")] == ["proj-1.safetensors"]
    rd = ReinforcedData(next(stages.glob("clip-reinforce-*")) / "reinforced")
    assert rd.image_emb.shape[2:] == (2, 16)  # two teachers, open_clip's 16-d space
    norms = np.linalg.norm(rd.image_emb[0, :, 0].astype(np.float32), axis=1)
    assert np.allclose(norms, 1, atol=2e-3)


def test_manifest_logit_scale_is_validated_and_used(clip_build, tmp_path):
    import shutil

    from pocketvit.errors import BundleError
    from pocketvit.runtime import load

    out, _ = clip_build
    copy = tmp_path / "bundle"
    shutil.copytree(out / "bundle", copy)
    m = json.loads((copy / "manifest.json").read_text())
    x = np.zeros((28, 28), np.uint8)
    x[6:22, 8:20] = 200
    sharp = load(copy, target="onnx").predict(x, input_color="GRAY")
    (copy / "manifest.json").write_text(json.dumps({**m, "logit_scale": 1.0}))
    flat = load(copy, target="onnx").predict(x, input_color="GRAY")
    # same cosine ranking (up to classes tied at float precision), softer probabilities
    assert flat.label in {label for label, score in sharp.topk if score >= sharp.score * (1 - 1e-5)}
    assert flat.score < sharp.score
    (copy / "manifest.json").write_text(json.dumps({**m, "logit_scale": -3}))
    with pytest.raises(BundleError, match="logit_scale"):
        load(copy, target="onnx")
