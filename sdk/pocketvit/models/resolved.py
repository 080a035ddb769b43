"""What a model source resolves to (`ResolvedModel`) and the manifest input block of a resize + centre-crop +
normalize contract; shared by every source (models/sources.py, models/source_hf.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

REFERENCE_WEIGHTS = "reference/weights.safetensors"


def source_block(arch: str, options: dict[str, Any], in_chans: int, num_classes: int, img_size: int) -> dict[str, Any]:
    """The manifest's `source`: how to rebuild the eager model (for verify/bench) from the bundle alone."""
    return {"arch": arch, "options": options, "in_chans": in_chans, "num_classes": num_classes,
            "img_size": img_size, "weights": REFERENCE_WEIGHTS}


@dataclass
class ResolvedModel:
    """A model ready to export, with everything the bundle needs to describe it."""

    spec: str  # MODEL as the user wrote it
    kind: str  # timm | efficientnet-lite | local | build
    name: str  # the bundle's name
    model: Any  # torch.nn.Module, eval mode
    input: dict[str, Any]  # the manifest's input contract
    labels: list[str]
    source: dict[str, Any]  # the manifest's source block (rebuilds eager torch for verify/bench)
    description: str  # what the model is, one sentence
    weights: str  # where the weights come from
    license: str  # licence of the weights
    random_init: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def params(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters()))

    def example(self):
        import torch

        return torch.zeros(1, self.input["channels"], self.input["height"], self.input["width"])

    def provenance(self) -> dict[str, Any]:
        return {"model": self.spec, "kind": self.kind, "description": self.description, "weights": self.weights,
                "license": self.license, "random_init": self.random_init, "params": self.params}


def center_crop_input(height: int, width: int, channels: int, mean, std, crop_pct: float | None,
                      color_order: str | None = None) -> dict[str, Any]:
    """The manifest input block of 'resize to size / crop_pct, centre-crop (height, width), normalize'.

    The resize follows timm's eval transform: floor(size / crop_pct), the shorter side for a square
    input, [h, w] otherwise. pocketvit.runtime resizes bilinear (antialiased), which `interpolation`
    records.
    """
    crop_pct = crop_pct or 1.0
    if height == width:
        resize: Any = math.floor(height / crop_pct)
    else:
        resize = [math.floor(height / crop_pct), math.floor(width / crop_pct)]
    color = color_order or ("GRAY" if channels == 1 else "RGB")
    return {"height": int(height), "width": int(width), "channels": int(channels), "layout": "NCHW",
            "dtype": "float32", "color_order": color, "resize": resize, "crop": [int(height), int(width)],
            "scale": 1.0 / 255.0, "mean": [float(v) for v in _per_channel(mean, channels)],
            "std": [float(v) for v in _per_channel(std, channels)], "interpolation": "bilinear"}


def _per_channel(values, channels: int) -> list[float]:
    values = list(values)
    if len(values) == channels:
        return values
    if channels == 1:
        return [sum(values) / len(values)]
    return (values * channels)[:channels] if len(values) == 1 else values[:channels]
