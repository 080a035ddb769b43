"""`--prompts` on zero-shot bundles: `pocketvit predict` and the headless demo choose among the given classes."""

import json
import os

import numpy as np

from tests.conftest import ROOT, run_cli

SDK_ENV = {"PYTHONPATH": os.pathsep.join([str(ROOT / "sdk"), os.environ.get("PYTHONPATH", "")])}


def _images(tmp_path, n=6):
    import cv2
    from pocketvit.data import load_dataset
    from pocketvit.recipe import load_recipe

    splits = load_dataset(load_recipe(ROOT / "tests" / "fixtures" / "tiny-clip.yaml", check_paths=False).data, 0)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}.png"), splits.test.images[i, 0].numpy())
    return folder


def test_predictor_restricted_to_prompts_matches_the_full_scores(clip_build, tmp_path):
    from pocketvit.runtime import load

    out, _ = clip_build
    img = np.zeros((28, 28), np.uint8)
    img[4:24, 9:19] = 180
    full = load(out / "bundle", target="onnx")
    picked = load(out / "bundle", target="onnx")
    picked.restrict_classes(["a Trouser", "the sandal", "Bag"])
    assert picked.labels == ["Trouser", "Sandal", "Bag"]
    a, b = full.predict(img, input_color="GRAY"), picked.predict(img, input_color="GRAY", topk=3)
    assert b.label in picked.labels and abs(sum(s for _, s in b.topk) - 1) < 1e-5
    # the restricted softmax is the full one renormalised over the chosen classes
    p = np.array([a.scores[full.labels.index(lbl)] for lbl in picked.labels])
    assert np.allclose(b.scores, p / p.sum(), atol=1e-5)


def test_predict_and_demo_cli_take_prompts(clip_build, tmp_path):
    out, _ = clip_build
    folder = _images(tmp_path)
    r = run_cli("predict", str(out / "bundle"), str(folder / "0.png"), "--prompts", "a trouser, a bag", "--json",
                env=SDK_ENV)
    assert r.returncode == 0, r.stderr
    assert {lbl for lbl, _ in json.loads(r.stdout)["topk"]} <= {"Trouser", "Bag"}
    r = run_cli("predict", str(out / "bundle"), str(folder / "0.png"), "--prompts", "a spaceship", env=SDK_ENV)
    assert r.returncode != 0 and "spaceship" in r.stderr and "Trouser" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("demo", str(out / "bundle"), "--source", str(folder), "--headless", "--out", str(tmp_path / "demo"),
                "--save", "none", "--prompts", "shirt,sneaker", env=SDK_ENV)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (tmp_path / "demo" / "frames.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {row["label"] for row in rows} <= {"Shirt", "Sneaker"}
