"""MediaPipe Tasks' ImageEmbedder loads a zero-shot bundle's drop-in .tflite with no glue: its embeddings match
pocketvit.runtime's and the zero-shot top-1 from them equals `pocketvit predict`'s.

MediaPipe runs in its own venv (PyPI mediapipe 1.2.2, no pocketvit on its path: tests/clip/mediapipe_embed.py). Slow;
run it with

    make test-mediapipe          # creates .venv-mediapipe, then runs the MediaPipe tests

Bundle: POCKETVIT_CLIP_BUNDLE (default runs/fashion-mnist-clip/bundle, `pocketvit build recipes/fashion-mnist-clip.yaml`)
when it has a litert-dropin file; else the tiny CLIP recipe built with litert (its random text encoder's class
prompts are nearly parallel, so that bundle gets seeded random class embeddings first). Images: Fashion-MNIST test images saved
as RGB PNGs (a camera frame: RGB, already the input size), the same files for MediaPipe and `pocketvit predict`.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.clip.conftest import TINY_CLIP, tiny_clip_sets, with_distinct_text_embeddings
from tests.conftest import ROOT, run_cli
from tests.export.test_dropin_mediapipe import _mediapipe_python

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).with_name("mediapipe_embed.py")
N_IMAGES = int(os.environ.get("POCKETVIT_MEDIAPIPE_IMAGES", "200"))
MIN_COSINE = 0.9999
SDK_ENV = {"PYTHONPATH": os.pathsep.join([str(ROOT / "sdk"), os.environ.get("PYTHONPATH", "")])}  # this checkout's CLI


def mediapipe_embed(model: Path, images: list[Path]) -> np.ndarray:
    """[N, D] float embeddings from MediaPipe's ImageEmbedder in its own venv, pocketvit off the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run([str(_mediapipe_python()), str(SCRIPT), str(model), *map(str, images)],
                          check=False, capture_output=True, text=True, env=env, cwd="/", timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])["results"]
    return np.array([r["embedding"] for r in results], dtype=np.float32)


def _bundle(tmp_path_factory, text_folder: Path, resnet_ckpt: Path) -> Path:
    trained = Path(os.environ.get("POCKETVIT_CLIP_BUNDLE", ROOT / "runs" / "fashion-mnist-clip" / "bundle"))
    if (trained / "model-dropin.tflite").is_file():
        return trained
    from pocketvit.pipeline.classify import run_build
    from pocketvit.recipe import load_recipe

    out = tmp_path_factory.mktemp("tiny-clip-litert")
    run_build(load_recipe(TINY_CLIP, tiny_clip_sets(text_folder, resnet_ckpt) + ["export.targets=[onnx, litert]"]),
              TINY_CLIP, out)
    return with_distinct_text_embeddings(out / "bundle", tmp_path_factory.mktemp("tiny-clip-text") / "bundle")


def test_mediapipe_image_embedder_on_the_zero_shot_dropin(tmp_path_factory, fmnist_root, tiny_text_folder,
                                                          tiny_resnet_ckpt):
    _mediapipe_python()
    from PIL import Image
    from pocketvit.data.fashion_mnist import load_split
    from pocketvit.runtime import load

    bundle = _bundle(tmp_path_factory, tiny_text_folder, tiny_resnet_ckpt)
    manifest = json.loads((bundle / "manifest.json").read_text())
    text = np.load(bundle / manifest["text_embeddings"])
    x, _ = load_split(fmnist_root, "test")
    folder = tmp_path_factory.mktemp("fm-images")
    paths = []
    for i in range(min(N_IMAGES, len(x))):
        p = folder / f"fm{i:05d}.png"
        Image.fromarray(x[i]).convert("RGB").save(p)
        paths.append(p)
    mp = mediapipe_embed(bundle / "model-dropin.tflite", paths)
    mp_top1 = [manifest["labels"][k] for k in (mp @ text.T).argmax(1)]  # cosine ranking (the model's output is unit)
    figures = {"bundle": str(bundle), "images": len(paths), "dim": int(mp.shape[1]),
               "mediapipe_norm_max_dev": float(np.abs(np.linalg.norm(mp, axis=1) - 1).max())}
    for target in ("litert-dropin", "litert"):
        p = load(bundle, target=target)
        pv = np.stack([p.predict(str(path), input_color="RGB").embedding for path in paths])
        cos = (mp / np.linalg.norm(mp, axis=1, keepdims=True) * pv).sum(1)
        r = run_cli("predict", str(bundle), *map(str, paths), "--target", target, "--json", "-k", "1", env=SDK_ENV)
        assert r.returncode == 0, r.stderr[-2000:]
        labels = [json.loads(line)["label"] for line in r.stdout.splitlines() if line.startswith("{")]
        assert len(labels) == len(paths)
        figures[target] = {"min_cosine": float(cos.min()), "same_top1": float(np.mean([a == b for a, b in
                                                                                      zip(mp_top1, labels)]))}
    print(json.dumps({"mediapipe_image_embedder": figures}))
    for target in ("litert-dropin", "litert"):
        assert figures[target]["min_cosine"] >= MIN_COSINE, figures
        assert figures[target]["same_top1"] == 1.0, figures
