"""Drop-in files (export/dropin.py, coreml_image.py, metadata.py): the image contract inside the model file.

Real toolchains and runtimes on tiny models: LiteRT and ExecuTorch drop-in files must give the same predictions
through pocketvit.runtime as the float files; TFLite metadata (with the tool venv), ONNX metadata_props and the
Core ML image-classifier spec are read back from the files written. MediaPipe itself: test_dropin_mediapipe.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

GRAY = {"height": 28, "width": 28, "channels": 1, "layout": "NCHW", "dtype": "float32", "color_order": "GRAY",
        "resize": 28, "crop": [28, 28], "scale": 1 / 255, "mean": [0.286], "std": [0.353]}
RGB = {"height": 16, "width": 16, "channels": 3, "layout": "NCHW", "dtype": "float32", "color_order": "RGB",
       "resize": 18, "crop": [16, 16], "scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
LABELS = [f"class {i}" for i in range(5)]


class Tiny(torch.nn.Module):
    def __init__(self, c: int):
        super().__init__()
        g = torch.Generator().manual_seed(c)
        self.conv = torch.nn.Conv2d(c, 8, 3, stride=2)
        self.fc = torch.nn.Linear(8, len(LABELS))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        return self.fc(torch.nn.functional.gelu(self.conv(x)).mean((2, 3)))


def _source_bundle(tmp_path, spec, targets=("litert", "onnx"), dropin=("litert",), dtype="uint8"):
    """A real bundle via export_to_bundle (the `pocketvit export` path) for a tiny model."""
    from pocketvit.models import build_model, source_block
    from pocketvit.models.sources import ResolvedModel
    from pocketvit.pipeline.export_model import export_to_bundle

    opts = {"stem_dim": 8, "dims": [16], "depths": [1], "heads": [1], "mlp_ratio": 2.0}
    c, n, size = spec["channels"], len(LABELS), spec["height"]
    model = build_model("pocketvit-tinyvit", c, n, size, opts).eval()
    g = torch.Generator().manual_seed(c)
    with torch.no_grad():  # spread the scores, so top-1 is not a near tie
        for prm in model.parameters():
            prm.add_(torch.randn(prm.shape, generator=g) * 0.3)
    resolved = ResolvedModel(spec="tiny", kind="local", name="tiny", model=model, input=spec, labels=LABELS,
                             source=source_block("pocketvit-tinyvit", opts, c, n, size),
                             description="a tiny test model", weights="random", license="test only")
    out = tmp_path / f"bundle-{spec['channels']}-{dtype}"
    result = export_to_bundle(resolved, list(targets), out, dropin=list(dropin), dropin_input=dtype,
                              n_inputs=4, latency_runs=3)
    return model, out, result


@pytest.fixture(scope="module")
def gray_bundle(tmp_path_factory):
    """A gray (Fashion-MNIST-like) bundle with litert, onnx and the default LiteRT drop-in (uint8)."""
    return _source_bundle(tmp_path_factory.mktemp("dropin"), GRAY)


def _bundle_of(tmp_path, f, spec, model):
    """A bundle around one drop-in file (no export-time measurement: quicker than export_to_bundle)."""
    from pocketvit.export.bundle import write_bundle_dir

    weights = tmp_path / "w.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    write_bundle_dir(tmp_path / "bundle", name="tiny", files=[f], labels=LABELS, input_spec=spec,
                     source={"arch": "test-tiny"}, reference_weights=weights)
    return tmp_path / "bundle"


def _eager_probs(model, spec, crops):
    from pocketvit.runtime import preprocess_array

    x = preprocess_array(crops, {**spec, "layout": "NCHW"}, "float-nchw")
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(x)), 1).numpy()


def _assert_rgb_predictions_match(bundle, target, model, n, seed):
    """pocketvit.runtime on random RGB photos through `target` gives eager softmax scores (same top-1)."""
    from pocketvit.runtime import load, prepare_image

    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (20, 24, 3), dtype=np.uint8) for _ in range(n)]
    want = _eager_probs(model, RGB, np.stack([prepare_image(im, RGB, "RGB") for im in images]))
    with load(bundle, target=target) as p:
        got = np.stack([p.predict(im, input_color="RGB").scores for im in images])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert (got.argmax(1) == want.argmax(1)).all()


@pytest.mark.parametrize("spec", [GRAY, RGB], ids=["gray", "rgb"])
def test_wrapper_is_the_contract_in_torch(spec):
    """uint8 and float NHWC pixels through the wrapper == softmax(model(preprocessed)), gray via PIL's luma."""
    from pocketvit.export.dropin import example_pixels, wrap
    from pocketvit.runtime import prepare_image

    model = Tiny(spec["channels"]).eval()
    w = wrap(model, spec)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, spec["height"], spec["width"], 3), dtype=np.uint8)
    crops = np.stack([prepare_image(im, spec, "RGB") for im in rgb])  # gray models: PIL luma on the host
    want = _eager_probs(model, spec, crops)
    pixels = rgb if spec["channels"] == 1 else crops  # the app's resize/crop done; a gray model takes RGB
    with torch.no_grad():
        got_u8 = w(torch.from_numpy(pixels)).numpy()
        got_f = w(torch.from_numpy(pixels.astype(np.float32))).numpy()
    np.testing.assert_allclose(got_u8, want, atol=2e-6)
    np.testing.assert_array_equal(got_u8, got_f)
    assert tuple(example_pixels(spec, "uint8").shape) == (1, spec["height"], spec["width"], 3)


def test_wrapper_luma_is_exactly_pils():
    """The in-graph luma must give PIL's integer luma bit for bit (float32 holds every term exactly)."""
    from PIL import Image
    from pocketvit.export.dropin import wrap

    class Identity(torch.nn.Module):
        def forward(self, x):
            return x

    w = wrap(Identity(), {**GRAY, "scale": 1.0, "mean": [0.0], "std": [1.0]}, task="embed")
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    rgb[0, 0, :6] = [[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 127, 129]]
    with torch.no_grad():
        gray = w(torch.from_numpy(rgb)).numpy()[0, 0]
    pil = np.asarray(Image.fromarray(rgb[0]).convert("L"))
    np.testing.assert_array_equal(gray, pil.astype(np.float32))


@pytest.mark.parametrize("dtype", ["uint8", pytest.param("float", marks=pytest.mark.slow)])
def test_litert_dropin_predicts_like_the_float_files(tmp_path, gray_bundle, dtype):
    from pocketvit.runtime import Bundle, load

    _, bundle, result = gray_bundle if dtype == "uint8" else _source_bundle(tmp_path, GRAY, dtype=dtype)
    assert result["targets"]["litert-dropin"]["status"] == "ok", result["targets"]["litert-dropin"]
    b = Bundle.open(bundle, verify=True)
    e = b.file_info("litert-dropin")
    assert e["path"] == "model-dropin.tflite" and e["outputs"] == "probabilities"
    assert e["input_form"] == ("uint8-nhwc" if dtype == "uint8" else "float-nhwc")
    assert e["input"] == {"channels": 3, "color_order": "RGB"} and b.input_form("litert") == "float-nchw"
    from ai_edge_litert.interpreter import Interpreter

    d = Interpreter(model_path=str(bundle / e["path"])).get_input_details()[0]
    assert list(d["shape"]) == [1, 28, 28, 3] and d["dtype"] == (np.uint8 if dtype == "uint8" else np.float32)
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (34, 30), dtype=np.uint8) for _ in range(12)]  # gray, resized + cropped
    preds = {}
    for t in ("litert", "onnx", "litert-dropin"):
        with load(bundle, target=t) as p:
            preds[t] = [p.predict(im, input_color="GRAY") for im in images]
    for a, c in zip(preds["litert"], preds["litert-dropin"]):
        assert a.label == c.label and abs(a.score - c.score) < 1e-5
        np.testing.assert_allclose(a.scores, c.scores, atol=1e-5)
    assert [p.label for p in preds["onnx"]] == [p.label for p in preds["litert-dropin"]]


def test_export_card_describes_the_dropin_file(gray_bundle):
    _, bundle, _ = gray_bundle
    card = (bundle / "README.md").read_text()
    assert "litert-dropin" in card and "MediaPipe" in card and "Licence of the weights: test only" in card
    assert "converts to gray inside" in card and "metadata_props" in card


def test_executorch_dropin_matches_eager_and_reports_the_delegate(tmp_path):
    from pocketvit.export.describe import backend_summary
    from pocketvit.export.dropin import export_dropin

    model = Tiny(3).eval()
    f = export_dropin(model, RGB, "executorch", tmp_path / "x")
    assert f.target == "executorch-dropin" and f.info["input_form"] == "uint8-nhwc" and f.info["delegate_calls"] >= 1
    assert "XNNPACK delegate call" in backend_summary(f.target, f.info)
    bundle = _bundle_of(tmp_path, f, RGB, model)
    _assert_rgb_predictions_match(bundle, "executorch-dropin", model, n=8, seed=3)


def test_onnx_metadata_props_carry_labels_and_contract(gray_bundle):
    from pocketvit.export.metadata import read_onnx_metadata

    _, bundle, _ = gray_bundle
    m = json.loads((bundle / "manifest.json").read_text())
    props = read_onnx_metadata(bundle / "model.onnx")
    assert json.loads(props["labels"]) == LABELS
    assert json.loads(props["preprocessing"]) == m["input"]
    assert props["input_form"] == "float-nchw" and props["outputs"] == "logits" and props["license"] == "test only"
    import onnxruntime as ort  # what a device reads, without the onnx package

    meta = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"]).get_modelmeta()
    assert json.loads(meta.custom_metadata_map["labels"]) == LABELS


def test_tflite_metadata_is_written_without_a_tool_venv(tmp_path, monkeypatch):
    """pocketvit's own environment writes the metadata (no tflite-support venv): labels packed, the file still runs."""
    from pocketvit.export.dropin import export_dropin
    from pocketvit.export.metadata import tflite_labels
    from pocketvit.runtime import load

    monkeypatch.setenv("POCKETVIT_TFLITE_TOOLS_PYTHON", str(tmp_path / "no-such-python"))
    model = Tiny(3).eval()
    f = export_dropin(model, RGB, "litert", tmp_path / "x")
    bundle = _bundle_of(tmp_path, f, RGB, model)
    meta = f.info["metadata"]
    assert meta["written"] is True and meta["labels"] == len(LABELS) and "flatbuffers" in meta["writer"]
    assert tflite_labels(bundle / "model-dropin.tflite") == LABELS
    entry = json.loads((bundle / "manifest.json").read_text())["files"]["litert-dropin"]
    assert entry["metadata"]["written"] is True
    with load(bundle, target="litert-dropin") as p:
        assert p.predict(np.zeros((16, 16, 3), np.uint8), input_color="RGB").label in LABELS


def test_tflite_metadata_reads_back(gray_bundle):
    from pocketvit.export.metadata import (
        read_tflite_metadata,
        read_with_tflite_support,
        tflite_labels,
        tools_python,
    )

    _, bundle, _ = gray_bundle
    path = bundle / "model-dropin.tflite"
    assert tflite_labels(path) == LABELS  # torch- and tool-free read: the packed labels file
    md = read_tflite_metadata(path)
    assert md["labels"] == LABELS and md["metadata"]["name"] == "tiny"
    assert md["metadata"]["min_parser_version"] == "1.0.0"
    inp = md["metadata"]["subgraph_metadata"][0]["input_tensor_metadata"][0]
    assert inp["content"]["content_properties"]["color_space"] == "RGB"
    norm = inp["process_units"][0]["options"]
    assert norm["mean"] == [0.0] and norm["std"] == [1.0]  # normalization is inside the graph
    assert "mean [0.286]" in inp["description"] and "luma" in inp["description"]
    out = md["metadata"]["subgraph_metadata"][0]["output_tensor_metadata"][0]
    assert out["associated_files"] == [{"name": "labels.txt", "type": "TENSOR_AXIS_LABELS",
                                        "description": "Labels for categories that the model can recognize."}]
    if tools_python() is not None:  # a second reader, tflite-support's own, when its venv exists
        theirs = read_with_tflite_support(path)
        assert theirs["labels"] == LABELS and theirs["metadata"]["name"] == "tiny"
        assert theirs["metadata"]["subgraph_metadata"][0]["input_tensor_metadata"][0]["process_units"] == \
            inp["process_units"]


@pytest.mark.parametrize("spec", [GRAY, RGB], ids=["gray", "rgb-per-channel-std"])
def test_coreml_image_classifier_spec(tmp_path, spec):
    pytest.importorskip("coremltools")
    from pocketvit.export.coreml_image import export_coreml_image, image_scale_bias, image_spec_check

    f = export_coreml_image(Tiny(spec["channels"]).eval(), spec, LABELS, tmp_path)
    check = image_spec_check(f.path, spec=spec, labels=LABELS)
    assert check["ok"], check["problems"]
    assert check["color_space"] == ("GRAYSCALE" if spec["channels"] == 1 else "RGB")
    assert (check["height"], check["width"]) == (spec["height"], spec["width"])
    scale, bias, divisor = image_scale_bias(spec)
    assert check["scale"][0] == pytest.approx(scale, rel=1e-6) and check["labels"] == LABELS
    np.testing.assert_allclose(check["bias"], bias, atol=1e-6)
    assert (divisor is None) == (spec["channels"] == 1)  # per-channel std stays inside the graph
    assert "macOS" in check["note"]
    bad = image_spec_check(f.path, spec=spec, labels=LABELS[::-1])
    assert not bad["ok"] and any("class labels" in p for p in bad["problems"])
    assert f.target == "coreml-dropin" and f.info["input_form"] == "uint8-nhwc"


def test_onnx_dropin_matches_eager_and_carries_its_own_contract(tmp_path):
    from pocketvit.export.dropin import export_dropin
    from pocketvit.export.metadata import read_onnx_metadata

    model = Tiny(3).eval()
    f = export_dropin(model, RGB, "onnx", tmp_path / "x")
    bundle = _bundle_of(tmp_path, f, RGB, model)
    props = read_onnx_metadata(bundle / "model-dropin.onnx")  # the bundle writer's metadata, this file's form
    assert props["input_form"] == "uint8-nhwc" and props["outputs"] == "probabilities"
    assert json.loads(props["labels"]) == LABELS
    _assert_rgb_predictions_match(bundle, "onnx-dropin", model, n=6, seed=4)


# mean 0: coremltools writes no add for an all-zero ImageType bias (FastViT-MCi, MobileViTv2: mean 0, std 1), and no
# multiply for a scale of 1; the spec check reads a missing op as that identity
MEAN0_RGB = {**RGB, "mean": [0.0] * 3, "std": [1.0] * 3}
MEAN0_GRAY = {**GRAY, "mean": [0.0], "std": [1.0]}
MEAN0_PER_CHANNEL_STD = {**RGB, "mean": [0.0] * 3}  # the ImageType bias is -mean = 0; / std stays in the graph
MEAN0_UNIT_SCALE = {**GRAY, "mean": [0.0], "std": [1 / 255]}  # scale / std == 1: no multiply either


@pytest.mark.parametrize("spec,omitted", [(MEAN0_RGB, ["bias"]), (MEAN0_GRAY, ["bias"]),
                                          (MEAN0_PER_CHANNEL_STD, ["bias"]), (MEAN0_UNIT_SCALE, ["scale", "bias"])],
                         ids=["rgb", "gray", "rgb-per-channel-std", "gray-unit-scale"])
def test_coreml_image_classifier_with_mean_zero(tmp_path, spec, omitted):
    pytest.importorskip("coremltools")
    from pocketvit.export.coreml_image import export_coreml_image, image_scale_bias, image_spec_check

    f = export_coreml_image(Tiny(spec["channels"]).eval(), spec, LABELS, tmp_path)
    check = f.info["spec_check"]
    assert check["ok"], check["problems"]
    assert check["omitted"] == omitted  # coremltools left the identity out of the file
    scale, bias, divisor = image_scale_bias(spec)
    assert check["bias"] == [0.0] and bias == [0.0] * spec["channels"]
    assert check["scale"][0] == pytest.approx(scale, rel=1e-6)
    assert (divisor is not None) == (spec is MEAN0_PER_CHANNEL_STD)
    # a missing add reads as zero only where zero is wanted: the same file against a mean-0.5 contract fails
    c = spec["channels"]
    bad = image_spec_check(f.path, spec={**spec, "mean": [0.5] * c}, labels=LABELS)
    assert not bad["ok"] and any(p.startswith("bias") for p in bad["problems"])
