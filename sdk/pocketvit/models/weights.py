"""A model from its meta (arch + options) and the data's shape; its weights in and out of safetensors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pocketvit.data.datasets import Splits
from pocketvit.errors import PocketVitError


def weights_path(where: Any, name: str) -> Path:
    """`<folder>/<name>.safetensors`, where `where` is a folder or anything with a `.path` (a stage result)."""
    return (Path(where) if isinstance(where, (str, Path)) else where.path) / f"{name}.safetensors"


def build_from_meta(meta: dict[str, Any], splits: Splits) -> torch.nn.Module:
    from pocketvit.models import build_model

    c, h, _ = splits.shape
    return build_model(meta["arch"], c, len(splits.labels), h, meta["options"])


def load_weights(model: torch.nn.Module, path: Path, what: str) -> torch.nn.Module:
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises several types for damaged files
        raise PocketVitError(f"{what}: cannot read {path} ({e}); rebuild it with --fresh") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise PocketVitError(
            f"{what}: {path} does not match the architecture (missing {missing[:3]}, unexpected {unexpected[:3]}); "
            "check the recipe's arch/options"
        )
    return model.eval()


def save_weights(model: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    from pocketvit.runtime.io import atomic_path
    from pocketvit.scale import current

    if not current().is_zero:  # in a multi-process run rank 0 writes the stage outputs
        return
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp))


def model_meta(model: torch.nn.Module, arch: str, options: dict, splits: Splits) -> dict[str, Any]:
    from pocketvit.models.stats import count_gflops, count_params

    return {"arch": arch, "options": options, "params": count_params(model),
            "gflops": round(count_gflops(model, splits.shape), 6)}
