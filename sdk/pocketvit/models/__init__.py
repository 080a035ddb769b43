"""Model factories: the project's own small students/teachers by name, timm models as `timm:NAME`,
Hugging Face image classifiers as `hf:FOLDER` (models/source_hf.py), EfficientNet-Lite as
`efficientnet-lite:lite0` (models/efficientnet_lite.py). Where a model to export comes
from (names, checkpoints, build directories): models/sources.py."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from pocketvit.errors import RecipeError
from pocketvit.models.resolved import REFERENCE_WEIGHTS, source_block

__all__ = ["LOCAL_ARCHS", "REFERENCE_WEIGHTS", "build_model", "describe", "from_source", "source_block"]

LOCAL_ARCHS = ("pocketvit-resnet", "pocketvit-tinyvit")


def build_model(arch: str, in_chans: int, num_classes: int, img_size: int, options: dict[str, Any] | None = None):
    """Build an untrained model. `options` are the architecture's config fields (widths, dims, ...)."""
    options = dict(options or {})
    if arch == "pocketvit-resnet":
        from pocketvit.models.resnet import ResNetConfig, SmallResNet

        return SmallResNet(_config(ResNetConfig, arch, options, in_chans=in_chans, num_classes=num_classes))
    if arch == "pocketvit-tinyvit":
        from pocketvit.models.tinyvit import TinyViTConfig, TinyViTStudent

        cfg = _config(TinyViTConfig, arch, options, in_chans=in_chans, num_classes=num_classes, img_size=img_size)
        return TinyViTStudent(cfg)
    if arch.startswith("timm:"):
        import timm

        name = arch.split(":", 1)[1]
        if name not in timm.list_models():
            close = timm.list_models(f"*{name[:6]}*")[:5]
            raise RecipeError(f"unknown timm model '{name}'" + (f" — did you mean one of {close}?" if close else ""))
        kwargs = dict(pretrained=False, in_chans=in_chans, num_classes=num_classes, **options)
        if "img_size" not in options:  # ViT / DeiT fix their token grid at build time: the data's size
            try:
                return timm.create_model(name, img_size=img_size, **kwargs)
            except TypeError as exc:  # convnets and TinyViT take any size and no img_size
                if "img_size" not in str(exc):
                    raise
        return timm.create_model(name, **kwargs)
    if arch.startswith("hf:"):
        from pocketvit.models.source_hf import build_hf

        return build_hf(arch, in_chans, num_classes, img_size, options)
    if arch.startswith("efficientnet-lite:"):
        from pocketvit.models import efficientnet_lite

        return efficientnet_lite.build(arch.split(":", 1)[1], in_chans, num_classes, img_size, options)
    raise RecipeError(f"unknown architecture '{arch}': use one of {', '.join(LOCAL_ARCHS)}, timm:NAME, "
                      "hf:FOLDER or efficientnet-lite:lite0")


def _config(cls, arch: str, options: dict[str, Any], **fixed):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise RecipeError(f"{arch}: unknown option(s) {unknown}; known: {sorted(known - set(fixed))}")
    return cls(**{**options, **fixed})


def describe(model) -> dict[str, Any]:
    """Architecture options of a local model (for the report and for rebuilding it)."""
    cfg = getattr(model, "cfg", None)
    return asdict(cfg) if cfg is not None else {}


def from_source(source: dict[str, Any], bundle_dir) -> Any:
    """Rebuild the eager torch model a bundle was exported from, with its reference weights (safetensors)."""
    from pathlib import Path

    from safetensors.torch import load_file

    from pocketvit.errors import BundleError

    weights = Path(bundle_dir) / source.get("weights", REFERENCE_WEIGHTS)
    if not weights.is_file():
        raise BundleError(f"{weights} not found: this bundle carries no reference weights, so eager torch "
                          "cannot be rebuilt; re-export it with pocketvit")
    model = build_model(source["arch"], source["in_chans"], source["num_classes"], source["img_size"],
                        source.get("options"))
    model.load_state_dict(load_file(str(weights)))
    return model.eval()
