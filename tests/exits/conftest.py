"""A tiny TinyViT student with 2 exits, trained a few steps on random images, and bundles of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

SPEC = {"height": 28, "width": 28, "channels": 1, "layout": "NCHW", "dtype": "float32", "color_order": "GRAY",
        "resize": None, "crop": None, "mean": [0.5], "std": [0.5]}
LABELS = [f"class{i}" for i in range(10)]
OPTIONS = {"stem_dim": 8, "dims": [16], "depths": [3], "heads": [1], "mlp_ratio": 2.0}


@pytest.fixture(scope="session")
def tiny_exit_model(tmp_path_factory):
    from pocketvit.exits.model import EarlyExitModel
    from pocketvit.exits.train import train_exits
    from pocketvit.models import build_model

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(64, 1, 28, 28, generator=g)
    ys = (xs.mean((1, 2, 3)) > 0).long() * 3 + (xs[:, 0, :14].mean((1, 2)) > 0).long()  # learnable-ish labels

    def batches(epoch):
        for i in range(0, 64, 16):
            yield xs[i : i + 16], ys[i : i + 16]

    student = build_model("pocketvit-tinyvit", 1, 10, 28, OPTIONS)
    model = EarlyExitModel(student, [1, 2], "auto", 10)
    train_exits(model, batches, 4, tmp_path_factory.mktemp("exits-train"), stage1_epochs=2, stage1_lr=3e-3,
                stage2_epochs=1, stage2_lr=3e-3)
    return model.eval()


def sample_images(n: int = 24, seed: int = 3) -> np.ndarray:
    """uint8 gray images with some structure (so exits disagree), NHWC."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(n, 28, 28, 1)).astype(np.float32)
    ramp = np.linspace(0, 255, 28, dtype=np.float32)[None, :, None, None]
    w = rng.uniform(0, 1, size=(n, 1, 1, 1)).astype(np.float32)
    return np.clip(w * base + (1 - w) * ramp, 0, 255).astype(np.uint8)


_EXPORTS: dict = {}


def _exported(model, target: str, work: Path):
    """Export the student and the segments once per model and target (exports are the slow part)."""
    from pocketvit.exits.export import export_segments
    from pocketvit.export import export_model
    from safetensors.torch import save_file

    key = (id(model), target)
    if key not in _EXPORTS:
        work.mkdir(parents=True, exist_ok=True)
        example = torch.zeros(1, 1, 28, 28)
        main = export_model(model.student(), example, target, work)
        meta = export_segments(model, example, target, work / "segments")
        save_file({k: v.contiguous() for k, v in model.student().state_dict().items()}, str(work / "student.safetensors"))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(work / "exits.safetensors"))
        _EXPORTS[key] = (main, meta, work)
    return _EXPORTS[key]


VIT_ARCH = "timm:vit_tiny_patch16_224"
VIT_OPTIONS = {"img_size": 28, "patch_size": 7, "depth": 3, "embed_dim": 32, "num_heads": 2}


@pytest.fixture(scope="session")
def vit_exit_model(tmp_path_factory):
    """A plain timm ViT student (DeiT's architecture) with 2 exits, a few training steps on random images."""
    from pocketvit.exits.model import EarlyExitModel
    from pocketvit.exits.train import train_exits
    from pocketvit.models import build_model

    torch.manual_seed(0)
    xs = torch.randn(32, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    ys = (xs.mean((1, 2, 3)) > 0).long()
    model = EarlyExitModel(build_model(VIT_ARCH, 1, 10, 28, VIT_OPTIONS), [1, 2], "auto", 10)
    train_exits(model, lambda e: iter([(xs[:16], ys[:16]), (xs[16:], ys[16:])]), 2,
                tmp_path_factory.mktemp("vit-exits-train"), stage1_epochs=2, stage1_lr=3e-3, stage2_epochs=1,
                stage2_lr=3e-3)
    model.source = (VIT_ARCH, VIT_OPTIONS)
    return model.eval()


def make_bundle(model, target: str, out: Path, thresholds: list[float]) -> Path:
    """The unsegmented student + the segmented exit program for `target`, as build.py writes them."""
    from pocketvit.exits.bundle import add_exit_programs
    from pocketvit.export.bundle import write_bundle_dir
    from pocketvit.models import source_block

    main, meta, work = _exported(model, target, out / "work")
    bundle = out / "bundle"
    write_bundle_dir(bundle, name="tiny-exits", files=[main], labels=LABELS, input_spec=SPEC,
                     source=source_block(*getattr(model, "source", ("pocketvit-tinyvit", OPTIONS)), 1, 10, 28),
                     reference_weights=work / "student.safetensors")
    add_exit_programs(bundle, {target: (work / "segments", meta)}, thresholds, work / "exits.safetensors")
    return bundle


def eager_logits(model, images: np.ndarray) -> np.ndarray:
    """(E + 1, N, C) eager logits on the bundle's preprocessing of `images`."""
    from pocketvit.runtime import preprocess_batch

    x = preprocess_batch(list(images), SPEC, input_color="GRAY")
    with torch.no_grad():
        return torch.stack(model(torch.from_numpy(x))).numpy()
