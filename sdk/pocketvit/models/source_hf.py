"""Hugging Face image classifiers as pocketvit models: `hf:FOLDER`, a local folder that transformers'
`AutoModelForImageClassification.from_pretrained` reads (config.json + weights, as `save_pretrained` writes it)
with its `preprocessor_config.json` (as an image processor's `save_pretrained` writes it). Nothing is downloaded.

    r = resolve_hf("hf:runs/my-vit")            # ResolvedModel: the classifier, its input contract, labels
    m = build_hf("hf:runs/my-vit", 3, 10, 224, {})   # an untrained model of the folder's architecture (a student)

- The model is wrapped so that it takes pixel values and returns the logits (`HFImageClassifier`).
- Preprocessing comes from preprocessor_config.json: resize (`size`: height/width, or shortest_edge with
  ConvNeXt's crop_pct or a centre crop to crop_size), rescale_factor, image_mean / image_std (when do_normalize),
  the channel order (MobileViT's do_flip_channel_order means BGR), EfficientNet's rescale_offset.
- Labels come from config.id2label.
- The bundle's `source` block carries the whole config (options.config), so verify and bench rebuild the eager
  model from the bundle alone, without the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pocketvit.errors import MissingExtraError, RecipeError
from pocketvit.models.resolved import ResolvedModel, center_crop_input, source_block

PREFIX = "hf:"
RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


class HFImageClassifier(nn.Module):
    """A transformers image classifier as pixels (N, C, H, W) -> logits (N, classes)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def _transformers():
    try:
        import transformers
    except ImportError as exc:
        raise MissingExtraError("transformers", "hf", "hf:FOLDER models") from exc
    return transformers


def folder_of(spec: str, base_dir: Path | None = None) -> Path:
    """'hf:FOLDER' -> the folder (relative to base_dir when given and FOLDER is relative)."""
    folder = Path(spec.removeprefix(PREFIX))
    if base_dir is not None and not folder.is_absolute():
        folder = Path(base_dir) / folder
    return folder


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise RecipeError(f"hf:{folder}: no config.json there; an hf: model is a folder written by transformers' "
                          "save_pretrained (config.json + model.safetensors + preprocessor_config.json)")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RecipeError(f"{path}: not readable JSON ({e})") from None


def config_from_dict(config: dict[str, Any]):
    """A transformers config object from its dict (config.json, or a bundle's source options)."""
    transformers = _transformers()
    model_type = config.get("model_type")
    if model_type not in transformers.CONFIG_MAPPING:
        raise RecipeError(f"hf: model_type '{model_type}' is not known to transformers "
                          f"{transformers.__version__}; an image classifier's config.json names one (vit, deit, ...)")
    return transformers.CONFIG_MAPPING[model_type].from_dict(config)


def _classifier(config) -> nn.Module:
    transformers = _transformers()
    if getattr(config, "architectures", None) is None:  # transformers iterates over it to pick among several classes
        config.architectures = []
    try:
        model = transformers.AutoModelForImageClassification.from_config(config)
    except ValueError as e:  # not an image classification architecture
        raise RecipeError(f"hf: {config.model_type} has no AutoModelForImageClassification class "
                          f"({str(e).splitlines()[0][:160]})") from None
    return HFImageClassifier(model).eval()


def build_hf(arch: str, in_chans: int, num_classes: int, img_size: int, options: dict[str, Any] | None = None):
    """An untrained `HFImageClassifier`: from options["config"] (a bundle's source block) as it is, else from the
    folder's config.json with num_labels / num_channels / image_size set to the student's."""
    options = dict(options or {})
    if "config" in options:
        return _classifier(config_from_dict(options["config"]))
    unknown = sorted(set(options) - {"config"})
    if unknown:
        raise RecipeError(f"{arch}: unknown option(s) {unknown}; an hf: architecture takes its config.json")
    config = read_config(folder_of(arch))
    config.update(num_labels=int(num_classes), num_channels=int(in_chans), image_size=int(img_size))
    config.pop("id2label", None)
    config.pop("label2id", None)
    return _classifier(config_from_dict(config))


def preprocessing(folder: Path, channels: int, input_size: tuple[int, int] | None,
                  default_size: int | None) -> tuple[dict[str, Any], list[str]]:
    """The manifest input block from preprocessor_config.json, and notes on what pocketvit does differently."""
    path = folder / "preprocessor_config.json"
    notes: list[str] = []
    if not path.is_file():
        raise RecipeError(f"hf:{folder}: no preprocessor_config.json; save the model's image processor there too "
                          "(AutoImageProcessor.save_pretrained), so the bundle carries its preprocessing")
    p = json.loads(path.read_text())
    size = p.get("size") or {}
    if isinstance(size, int):
        size = {"shortest_edge": size}
    crop = p.get("crop_size") if p.get("do_center_crop") else None
    if isinstance(crop, int):
        crop = {"height": crop, "width": crop}
    resize: Any
    if "height" in size and "width" in size:
        resize = [int(size["height"]), int(size["width"])]
        h, w = (int(crop["height"]), int(crop["width"])) if crop else tuple(resize)
    elif "shortest_edge" in size:
        edge = int(size["shortest_edge"])
        if "crop_pct" in p and edge < 384:  # ConvNeXt: shorter side to edge / crop_pct, then an edge x edge crop
            resize, h, w = int(edge / p["crop_pct"]), edge, edge
        elif "crop_pct" in p:  # ConvNeXt at 384 and above: warped to edge x edge, no crop
            resize, h, w = [edge, edge], edge, edge
        else:
            resize = edge
            h, w = (int(crop["height"]), int(crop["width"])) if crop else (edge, edge)
    else:
        edge = int(default_size or 224)
        resize, h, w = [edge, edge], edge, edge
        notes.append(f"preprocessor_config.json gives no usable size ({size}); using {edge}x{edge}")
    if not p.get("do_resize", True):
        resize = None
    if input_size is not None and (int(input_size[0]), int(input_size[1])) != (h, w):
        ih, iw = int(input_size[0]), int(input_size[1])
        resize = ([round(resize[0] * ih / h), round(resize[1] * iw / w)] if isinstance(resize, list)
                  else round(resize * min(ih / h, iw / w)) if resize is not None else None)
        notes.append(f"exported at {ih}x{iw}; the image processor gives {h}x{w}")
        h, w = ih, iw
    scale = float(p.get("rescale_factor", 1 / 255)) if p.get("do_rescale", True) else 1.0
    mean, std = (p.get("image_mean") or [0.0] * channels, p.get("image_std") or [1.0] * channels) \
        if p.get("do_normalize", True) else ([0.0] * channels, [1.0] * channels)
    if p.get("rescale_offset"):  # EfficientNet: pixel * rescale_factor - 1, then normalize: the -1 joins the mean
        mean = [m + 1.0 for m in mean]
    color = "BGR" if p.get("do_flip_channel_order") else None
    spec = center_crop_input(h, w, channels, mean, std, 1.0, color_order=color)
    spec.update(resize=resize, scale=scale)
    resample = RESAMPLE.get(p.get("resample", 2), "bilinear")
    if resample != "bilinear":
        notes.append(f"the image processor resizes with {resample}; pocketvit.runtime resizes bilinear "
                     "(antialiased), so pixel values differ slightly from transformers' pipeline")
    return spec, notes


def resolve_hf(spec: str, *, checkpoint: Path | None = None, input_size=None, num_classes: int | None = None,
               in_chans: int | None = None) -> ResolvedModel:
    """`hf:FOLDER` -> ResolvedModel (the classifier with the folder's weights, its preprocessing and labels)."""
    folder = folder_of(spec)
    if not folder.is_dir():
        raise RecipeError(f"{spec}: no such folder; hf:FOLDER is a local folder written by save_pretrained "
                          "(pocketvit does not download from the Hub)")
    if checkpoint is not None or in_chans is not None:
        raise RecipeError(f"{spec}: the folder carries its own weights and channels; drop --checkpoint / --in-chans")
    config = read_config(folder)
    id2label = config.get("id2label") or {}
    classes = len(id2label) or int(config.get("num_labels", 2))
    if num_classes is not None and int(num_classes) != classes:
        raise RecipeError(f"{spec} has {classes} classes (config.id2label); --num-classes cannot change them")
    transformers = _transformers()
    try:
        hf_model = transformers.AutoModelForImageClassification.from_pretrained(str(folder))
    except (OSError, ValueError, RuntimeError) as e:
        raise RecipeError(f"{spec}: transformers could not load it ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200]})") from None
    model = HFImageClassifier(hf_model).eval()
    channels = int(getattr(hf_model.config, "num_channels", 3))
    default = getattr(hf_model.config, "image_size", None)
    default = default[0] if isinstance(default, (list, tuple)) else default
    spec_in, notes = preprocessing(folder, channels, input_size, default)
    h, w = spec_in["height"], spec_in["width"]
    try:
        with torch.no_grad():
            model(torch.zeros(1, channels, h, w))
    except Exception as e:  # noqa: BLE001 - transformers raises ValueError, RuntimeError, ... on a wrong size
        raise RecipeError(f"{spec} does not run on a {channels}x{h}x{w} input ({str(e).splitlines()[0][:160]}); "
                          "try the size its image processor gives (drop --input-size)") from None
    labels = [str(id2label.get(str(i), id2label.get(i, f"class_{i}"))) for i in range(classes)]
    full = hf_model.config.to_dict()
    arch = f"{PREFIX}{folder.name}"
    weights = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")]
    from pocketvit.runtime.io import sha256_file

    described = ", ".join(f"{p.name} (sha256 {sha256_file(p)[:16]}…)" for p in sorted(weights)) or "its weights"
    return ResolvedModel(
        spec=spec, kind="hf", name=folder.name, model=model, input=spec_in, labels=labels,
        source=source_block(arch, {"config": full}, channels, classes, h),
        description=(f"Hugging Face {type(hf_model).__name__} ({full.get('model_type')}, {classes} classes, "
                     f"{channels}-channel {h}x{w} input) from {folder}"),
        weights=f"{described} in {folder}, supplied by the user",
        license="that of the folder's weights (pocketvit cannot know it; see its model card)",
        random_init=False, notes=notes,
    )
