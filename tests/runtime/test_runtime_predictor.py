"""Predictor on real runtimes vs eager torch, on the same preprocessed inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from pocketvit.errors import BundleError
from pocketvit.runtime import load, open_backend, preprocess, softmax
from runtime_testkit import LABELS, eager_probs, random_images, write_bundle

TARGETS = ["onnx", "litert", "executorch"]


@pytest.mark.parametrize("target", TARGETS)
def test_backend_matches_eager(tiny, target):
    images = random_images(4)
    p = load(tiny["root"], target=target, num_threads=1)
    assert p.target == target and p.runtime == target
    spec = p.input_spec
    for img in images:
        r = p.predict(img, topk=3)
        want = eager_probs(tiny["full"], preprocess(img, spec))[0]
        assert r.label == LABELS[int(want.argmax())]
        assert r.index == int(want.argmax())
        np.testing.assert_allclose(r.scores, want, atol=1e-4)
        assert len(r.topk) == 3 and r.topk[0] == (r.label, r.score)
        assert [s for _, s in r.topk] == sorted((s for _, s in r.topk), reverse=True)
        assert r.exit is None and r.latency_ms > 0 and p.last_preprocess_ms > 0
    batch = p.predict_batch(images)
    assert [b.label for b in batch] == [p.predict(i).label for i in images]
    np.testing.assert_allclose(
        np.stack([b.scores for b in batch]),
        eager_probs(tiny["full"], np.concatenate([preprocess(i, spec) for i in images])),
        atol=1e-4,
    )
    p.close()


@pytest.mark.parametrize("target", TARGETS)
def test_open_backend_run_and_run_method(tiny, target):
    fname = {"onnx": "model.onnx", "litert": "model.tflite", "executorch": "model.pte"}[target]
    b = open_backend(target, tiny["root"] / fname, num_threads=1)
    assert b.input_shape == (1, 1, 28, 28)
    x = np.random.default_rng(1).normal(size=(2, 1, 28, 28)).astype(np.float32)
    y = b.run(x)  # batch 2 on a batch-1 model: run one by one
    assert y.shape == (2, 10)
    y0 = b.run_method("forward", [x[:1]])[0]
    np.testing.assert_allclose(y0, y[:1], rtol=1e-5, atol=1e-5)
    with pytest.raises(BundleError, match="no method"):
        b.run_method("nope", [x[:1]])
    b.close()


def test_default_target_and_unknown_target(tiny):
    assert load(tiny["root"], warmup=0).target == "onnx"
    with pytest.raises(BundleError, match="no target 'coreml'.*onnx, litert, executorch"):
        load(tiny["root"], target="coreml")


def test_coreml_refuses_off_apple(tmp_path):
    import sys

    if sys.platform == "darwin":
        pytest.skip("Core ML runs here")
    from pocketvit.runtime import RuntimeUnavailableError

    (tmp_path / "m.mlpackage").mkdir()
    with pytest.raises(RuntimeUnavailableError, match="only execute on macOS or iOS.*another target"):
        open_backend("coreml", tmp_path / "m.mlpackage")


def _exit_bundle(tiny, tmp_path, thresholds):
    root = tmp_path / "b"
    root.mkdir(parents=True)
    for f in ("model.pte", "exits.tflite", "model.onnx"):
        shutil.copy(tiny["root"] / f, root / f)
    exits = [
        {"name": "block1", "after_block": 1, "method": "seg0", "threshold": thresholds},
        {"name": "final", "after_block": 2, "method": "seg1", "threshold": None},
    ]
    write_bundle(
        root,
        {
            "executorch": ("model.pte", "executorch", "fp32", {}),
            "litert": ("exits.tflite", "litert", "fp32", {}),
            "onnx": ("model.onnx", "onnx", "fp32", {}),
        },
        exits=exits,
    )
    return root


@pytest.mark.parametrize("target", ["executorch", "litert"])
def test_early_exits(tiny, tmp_path, target):
    torch = pytest.importorskip("torch")
    images = random_images(3, seed=3)
    spec = json.loads((tiny["root"] / "manifest.json").read_text())["input"]
    xs = [torch.from_numpy(preprocess(i, spec)) for i in images]
    with torch.no_grad():
        early = [torch.softmax(tiny["seg0"](x)[1], -1).numpy()[0] for x in xs]
        final = [torch.softmax(tiny["full"](x), -1).numpy()[0] for x in xs]

    p = load(_exit_bundle(tiny, tmp_path, 0.0), target=target)  # every image leaves at the first exit
    for img, e in zip(images, early):
        r = p.predict(img)
        assert r.exit == "block1"
        np.testing.assert_allclose(r.scores, e, atol=1e-4)
    shutil.rmtree(tmp_path / "b")
    p = load(_exit_bundle(tiny, tmp_path, 1.01), target=target)  # nobody is that sure: full chain
    for img, f in zip(images, final):
        r = p.predict(img)
        assert r.exit is None
        np.testing.assert_allclose(r.scores, f, atol=1e-4)
    assert [r.exit for r in p.predict_batch(images)] == [None] * 3
    # onnx has one graph, no segments: the manifest's exits do not apply, forward runs
    q = load(p.bundle, target="onnx")
    assert q.exits == [] and q.predict(images[0]).exit is None
    # exits switched off: the full model (forward in the .pte; the whole chain in exits.tflite,
    # which has only the segments)
    off = load(_exit_bundle(tiny, tmp_path / "off", 0.0), target=target, use_exits=False)
    for img, f in zip(images, final):
        r = off.predict(img)
        assert r.exit is None
        np.testing.assert_allclose(r.scores, f, atol=1e-4)
    raw = p.run(np.concatenate([preprocess(i, spec) for i in images]))  # full model, raw logits
    np.testing.assert_allclose(softmax(raw), np.stack(final), atol=1e-4)


def test_zero_shot_and_embed(tmp_path):
    torch = pytest.importorskip("torch")
    from runtime_testkit import export_onnx

    torch.manual_seed(1)
    enc = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 13 * 13, 8),
    ).eval()
    x = torch.randn(1, 1, 28, 28)
    export_onnx(enc, x, tmp_path / "enc.onnx")
    text = np.random.default_rng(0).normal(size=(10, 8)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    np.save(tmp_path / "text_embeddings.npy", text)
    write_bundle(
        tmp_path,
        {"onnx": ("enc.onnx", "onnx", "fp32", {})},
        task="zero-shot",
        outputs="embedding",
        text_embeddings="text_embeddings.npy",
    )
    img = random_images(1, seed=5)[0]
    p = load(tmp_path, target="onnx")
    spec = p.input_spec
    with torch.no_grad():
        emb = torch.nn.functional.normalize(enc(torch.from_numpy(preprocess(img, spec))), dim=-1)
        want = torch.softmax(100 * emb @ torch.from_numpy(text).T, -1).numpy()[0]
    r = p.predict(img)
    np.testing.assert_allclose(r.scores, want, atol=1e-4)
    assert r.label == LABELS[int(want.argmax())]
    np.testing.assert_allclose(r.embedding, emb.numpy()[0], atol=1e-5)

    # the text embeddings are sha-checked too
    np.save(tmp_path / "text_embeddings.npy", text[::-1].copy())
    with pytest.raises(BundleError, match="text_embeddings.npy: sha256 mismatch"):
        load(tmp_path, target="onnx")

    m = json.loads((tmp_path / "manifest.json").read_text())
    m.update(task="embed", labels=None, text_embeddings=None)
    del m["text_embeddings_sha256"]
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    r = load(tmp_path, target="onnx").predict(img)
    assert r.label is None and r.score is None and r.topk == []
    np.testing.assert_allclose(r.embedding, emb.numpy()[0], atol=1e-5)


def test_litert_int8_quantized_io(tmp_path):
    """A full-integer .tflite (int8 input and output tensors): the backend quantizes the input and
    dequantizes the output with the tensors' (scale, zero_point)."""
    torch = pytest.importorskip("torch")
    litert_torch = pytest.importorskip("litert_torch")
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from runtime_testkit import quiet
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    torch.manual_seed(2)
    nn = torch.nn
    full = nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    ).eval()
    x = torch.randn(1, 1, 28, 28)
    with quiet():
        q = PT2EQuantizer().set_global(
            get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
        )
        g = prepare_pt2e(torch.export.export(full, (x,)).module(), q)
        images = random_images(8, seed=7)
        spec = {
            "height": 28,
            "width": 28,
            "channels": 1,
            "color_order": "GRAY",
            "resize": 28,
            "crop": [28, 28],
            "scale": 1 / 255,
            "mean": [0.286],
            "std": [0.353],
        }
        for img in images:
            g(torch.from_numpy(preprocess(img, spec)))
        g = convert_pt2e(g, fold_quantize=False)
        litert_torch.convert(g, (x,), quant_config=QuantConfig(pt2e_quantizer=q)).export(
            str(tmp_path / "q.tflite")
        )
    write_bundle(tmp_path, {"litert-int8": ("q.tflite", "litert", "int8", {})})
    p = load(tmp_path, target="litert-int8")
    assert p.backend.input_dtype == np.int8 and p.backend.input_quantization[0] > 0
    agree = 0
    for img in images:
        want = eager_probs(full, preprocess(img, spec))[0]
        got = p.predict(img).scores
        cos = float(want @ got / np.linalg.norm(want) / np.linalg.norm(got))
        assert cos > 0.97
        agree += int(want.argmax() == got.argmax())
    assert agree >= 6


def test_litert_falls_back_to_tflite_runtime(tiny, monkeypatch):
    """Without ai_edge_litert the backend uses tflite_runtime (what a Raspberry Pi has); without
    either it names the extra to install."""
    import sys
    import types

    import ai_edge_litert.interpreter as real
    from pocketvit.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    fake = types.ModuleType("tflite_runtime")
    fake.interpreter = real
    monkeypatch.setitem(sys.modules, "tflite_runtime", fake)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", real)
    b = open_backend("litert", tiny["root"] / "model.tflite")
    assert b.run(np.zeros((1, 1, 28, 28), np.float32)).shape == (1, 10)
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(MissingExtraError, match=r"ai-edge-litert.*pocketvit\[litert\]"):
        open_backend("litert", tiny["root"] / "model.tflite")
