"""Zero-shot bundles get drop-in files (export.dropin): NHWC uint8 RGB pixels in, the L2-normalised embedding out,
image-embedder TFLite metadata; pocketvit.runtime gives the float file's embeddings and labels from it.

The tiny CLIP build (conftest `clip_build`) is copied and rebuilt with `export.dropin=[litert]`: every stage but the
drop-in export and its zero-shot run comes from the stage cache."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.clip.conftest import TINY_CLIP, tiny_clip_sets, with_distinct_text_embeddings

N_IMAGES = 40


def _rebuild(src, dst, text_folder, resnet_ckpt, *sets):
    from pocketvit.pipeline.classify import run_build
    from pocketvit.recipe import load_recipe

    shutil.copytree(src, dst)
    return run_build(load_recipe(TINY_CLIP, tiny_clip_sets(text_folder, resnet_ckpt) + list(sets)), TINY_CLIP, dst)


@pytest.fixture(scope="module")
def dropin_build(clip_build, tmp_path_factory, tiny_text_folder, tiny_resnet_ckpt):
    out = tmp_path_factory.mktemp("tiny-clip-dropin") / "build"
    report = _rebuild(clip_build[0], out, tiny_text_folder, tiny_resnet_ckpt, "export.dropin=[litert]")
    return out, report


def test_manifest_and_report_describe_the_dropin_file(dropin_build):
    out, report = dropin_build
    m = json.loads((out / "bundle" / "manifest.json").read_text())
    e = m["files"]["litert-dropin"]
    assert (e["path"], e["runtime"], e["input_form"], e["outputs"]) == ("model-dropin.tflite", "litert", "uint8-nhwc",
                                                                       "embedding")
    assert e["input"] == {"channels": 3, "color_order": "RGB"}  # a gray model takes RGB frames, converts inside
    assert m["task"] == "zero-shot" and m["files"]["onnx"]["input_form"] == "float-nchw"
    t = report["targets"]["litert-dropin"]  # measured on LiteRT over the whole test split, like the float file
    assert t["runtime"] == "litert" and t["within_tolerance"] and t["parity"]["cosine"] >= 0.9999
    assert abs(t["test_top1"] - report["targets"]["onnx"]["test_top1"]) <= 1 / 120 + 1e-9
    assert "litert-dropin" in report["zero_shot"] and t["export_info"]["input_form"] == "uint8-nhwc"
    card = (out / "bundle" / "README.md").read_text()
    assert "model-dropin.tflite" in card and "ImageEmbedder" in card


def test_runtime_gives_the_float_files_embeddings_and_labels(dropin_build, tmp_path):
    from pocketvit.data import load_dataset
    from pocketvit.recipe import load_recipe
    from pocketvit.runtime import load

    out, _ = dropin_build
    splits = load_dataset(load_recipe(TINY_CLIP, check_paths=False).data, 0)
    images = [im[0].numpy() for im in splits.test.images[:N_IMAGES]]
    bundle = with_distinct_text_embeddings(out / "bundle", tmp_path / "bundle")
    dropin, ref = load(bundle, target="litert-dropin"), load(bundle, target="onnx")
    assert dropin.input_form == "uint8-nhwc" and dropin.outputs == "embedding"
    got = [dropin.predict(x, input_color="GRAY") for x in images]
    want = [ref.predict(x, input_color="GRAY") for x in images]
    a, b = np.stack([p.embedding for p in got]), np.stack([p.embedding for p in want])
    assert np.abs(a - b).max() < 1e-4
    assert (a * b).sum(1).min() >= 0.9999
    assert [p.label for p in got] == [p.label for p in want]
    text = np.load(bundle / "text_embeddings.npy")  # cosine with the class embeddings x logit_scale
    assert [p.index for p in got] == (a @ text.T).argmax(1).tolist()
    assert np.allclose([p.score for p in got], [p.score for p in want], atol=1e-4)


def test_tflite_metadata_says_image_embedder(dropin_build):
    from pocketvit.export.metadata import read_tflite_metadata

    out, _ = dropin_build
    md = read_tflite_metadata(out / "bundle" / "model-dropin.tflite")
    assert md["metadata"]["name"] == "tiny-clip" and md["labels"] == [] and md["associated_files"] == []
    sub = md["metadata"]["subgraph_metadata"][0]
    image = sub["input_tensor_metadata"][0]
    assert image["content"]["content_properties"]["color_space"] == "RGB"
    assert image["process_units"][0]["options"] == {"mean": [0.0], "std": [1.0]}  # normalization is in the graph
    assert [(t["name"], t["content"]["content_properties_type"]) for t in sub["output_tensor_metadata"]] == [
        ("embedding", "FeatureProperties")]


def test_without_the_tool_venv_the_file_carries_its_metadata(dropin_build, tmp_path, monkeypatch,
                                                              tiny_text_folder, tiny_resnet_ckpt):
    from pocketvit.export.metadata import TOOLS_ENV, read_tflite_metadata, tflite_labels

    monkeypatch.setenv(TOOLS_ENV, str(tmp_path / "no-such-python"))
    out = tmp_path / "build"
    report = _rebuild(dropin_build[0], out, tiny_text_folder, tiny_resnet_ckpt, "export.dropin=[litert]")
    md = read_tflite_metadata(out / "bundle" / "model-dropin.tflite")
    assert md["metadata"]["name"] == "tiny-clip"
    assert tflite_labels(out / "bundle" / "model-dropin.tflite") is None  # an embedder: no labels file
    assert report["targets"]["litert-dropin"]["verify"]["status"] == "pass"


def test_a_coreml_dropin_is_refused_before_training(tiny_text_folder, tiny_resnet_ckpt, tmp_path):
    from pocketvit.errors import RecipeError
    from pocketvit.pipeline.classify import run_build
    from pocketvit.recipe import load_recipe

    r = load_recipe(TINY_CLIP, tiny_clip_sets(tiny_text_folder, tiny_resnet_ckpt) + ["export.dropin=[coreml]"])
    with pytest.raises(RecipeError, match="export.dropin: coreml"):
        run_build(r, TINY_CLIP, tmp_path)
    assert not (tmp_path / "stages").exists()
