"""Hugging Face image classifiers as models (models/source_hf.py): folders written here by save_pretrained (tiny
configs, weights the test creates, each with its own image processor), exported through the `pocketvit export` path
and checked on a runtime, their preprocessing against transformers' own image processor, as teachers and students."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.hf_export import LABELS, tiny_folder  # noqa: E402  (after the importorskips)


def _folder(tmp_path, kind: str):
    return tiny_folder(tmp_path, kind)


@pytest.mark.parametrize("kind,resize,crop,color", [
    ("vit", [32, 32], [32, 32], "RGB"),
    ("deit", [36, 36], [32, 32], "RGB"),  # resize then centre crop to crop_size
    ("convnext", 36, [32, 32], "RGB"),  # shortest_edge / crop_pct, then a shortest_edge crop
    ("mobilevit", 40, [32, 32], "BGR"),  # do_flip_channel_order: the model takes BGR
])
def test_preprocessing_comes_from_the_image_processor(tmp_path, kind, resize, crop, color):
    from pocketvit.models.sources import resolve_model

    folder, _, processor = _folder(tmp_path, kind)
    r = resolve_model(f"hf:{folder}")
    spec = r.input
    assert (spec["resize"], spec["crop"], spec["color_order"]) == (resize, crop, color)
    assert spec["scale"] == pytest.approx(processor.rescale_factor)
    assert r.labels == LABELS and r.kind == "hf" and r.name == f"tiny-{kind}"
    assert r.source["options"]["config"]["model_type"] == kind and r.source["arch"] == f"hf:tiny-{kind}"


def test_efficientnet_rescale_offset_joins_the_mean(tmp_path):
    from pocketvit.models.sources import resolve_model

    folder, _, processor = _folder(tmp_path, "efficientnet")
    spec = resolve_model(f"hf:{folder}").input
    # pixel / 127.5 - 1, then (x - mean) / std  ==  (pixel / 127.5 - (1 + mean)) / std
    assert spec["scale"] == pytest.approx(1 / 127.5)
    np.testing.assert_allclose(spec["mean"], np.asarray(processor.image_mean) + 1.0)


def test_runtime_preprocessing_matches_the_image_processor(tmp_path):
    """ViT's processor resizes with PIL bilinear, as pocketvit.runtime does: the same pixel values."""
    from pocketvit.models.sources import resolve_model
    from pocketvit.runtime import preprocess_batch

    folder, _, processor = _folder(tmp_path, "deit")
    spec = resolve_model(f"hf:{folder}").input
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)  # already the resize size: the crop is what differs
    ours = preprocess_batch([image], spec, input_color="RGB")
    theirs = processor(images=image, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("kind", ["vit", pytest.param("convnext", marks=pytest.mark.slow),
                                  pytest.param("mobilevit", marks=pytest.mark.slow)])
def test_export_hf_folder_and_verify_without_it(tmp_path, kind):
    """`pocketvit export hf:FOLDER`: the bundle carries the whole config, so verify rebuilds eager torch with the
    folder gone; labels from id2label; the LiteRT drop-in takes RGB frames even for MobileViT's BGR model."""
    import shutil

    from pocketvit.bench.parity import verify_bundle
    from pocketvit.models.sources import resolve_model
    from pocketvit.pipeline.export_model import export_to_bundle

    folder, model, _ = _folder(tmp_path, kind)
    resolved = resolve_model(f"hf:{folder}")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(resolved.model(x).numpy(), model(pixel_values=x).logits.numpy(), atol=1e-6)
    out = tmp_path / "bundle"
    dropin = ["litert"] if kind == "mobilevit" else []
    targets = ["onnx", "litert"] if kind == "mobilevit" else ["onnx"]
    result = export_to_bundle(resolved, targets, out, dropin=dropin, n_inputs=4, latency_runs=2)
    assert not result["failed"] and not result["parity_failed"], result["failed"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["labels"] == LABELS
    shutil.rmtree(folder)
    check = verify_bundle(out, n_inputs=4)
    assert check["passed"], check["targets"]
    if kind == "mobilevit":
        assert manifest["input"]["color_order"] == "BGR" and check["targets"]["litert-dropin"]["status"] == "pass"


def test_hf_errors_name_the_fix(tmp_path):
    from pocketvit.errors import RecipeError
    from pocketvit.models.sources import resolve_model

    with pytest.raises(RecipeError, match="no such folder"):
        resolve_model(f"hf:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecipeError, match="config.json"):
        resolve_model(f"hf:{tmp_path / 'empty'}")
    folder, _, _ = _folder(tmp_path, "vit")
    with pytest.raises(RecipeError, match="--num-classes"):
        resolve_model(f"hf:{folder}", num_classes=10)
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(RecipeError, match="preprocessor_config.json"):
        resolve_model(f"hf:{folder}")


def test_hf_teacher_and_student(tmp_path):
    """A teacher hf:FOLDER (relative to the recipe) used as it comes, with its own preprocessing; a student
    hf:FOLDER is the folder's architecture sized for the data, untrained."""
    from pocketvit.data.datasets import ImageSet, Splits
    from pocketvit.models import build_model
    from pocketvit.models.teachers import is_pretrained, load_teacher

    folder, model, _ = _folder(tmp_path, "vit")
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=g)
    s = ImageSet(images, torch.arange(4) % 3)
    splits = Splits("t", s, s, s, LABELS, [0.5] * 3, [0.5] * 3, "RGB")
    t = load_teacher({"arch": f"hf:{folder.name}"}, tmp_path, splits)
    assert t.labels == LABELS and t.inputs[0]["height"] == 32
    with torch.no_grad():
        out = t.model(splits.normalize(images))
        ref = model(pixel_values=images.float() / 255 * 2 - 1).logits  # the processor's rescale + normalize
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)

    class Section:
        arch, pretrained, ensemble = f"hf:{folder}", False, None

    assert is_pretrained(Section())
    student = build_model(f"hf:{folder}", 1, 10, 28)
    with torch.no_grad():
        assert student(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
