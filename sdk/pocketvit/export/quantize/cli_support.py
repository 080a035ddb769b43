"""`pocketvit export ... --quantize int8`: calibration images for a model outside a build, and the int8
exports that export_to_bundle adds beside the fp32 files (target '<runtime>-int8')."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pocketvit.errors import DataError, ExportError, MissingExtraError

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def _fashion_mnist(spec: dict[str, Any], n: int, held: int, seed: int):
    """Training images (calibration) and validation images + labels (budget), split as a recipe does."""
    import torch

    from pocketvit.data import load_dataset
    from pocketvit.export.quantize.calibration import calibration_images, held_out_images
    from pocketvit.recipe.schema import DataSection

    if spec["channels"] != 1 or (spec["height"], spec["width"]) != (28, 28):
        raise DataError("--calibration fashion-mnist fits 28x28 gray models; pass a folder of images instead")
    splits = load_dataset(DataSection(), seed)
    calib, _ = calibration_images(splits, n, seed)
    hx, hy = held_out_images(splits, held, seed + 1)
    return calib.to(torch.float32), hx, hy


def _folder(folder: Path, spec: dict[str, Any], n: int, held: int):
    import torch

    from pocketvit.runtime import preprocess_batch

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise DataError(f"--calibration {folder}: found {len(files)} image(s) (png/jpg/bmp/webp); put a few hundred "
                        "training images there (never test images)")
    from PIL import Image

    mode = "L" if spec["channels"] == 1 else "RGB"
    arrays = [np.asarray(Image.open(f).convert(mode)) for f in files[: n + held]]
    x = preprocess_batch(arrays, spec, input_color="GRAY" if mode == "L" else "RGB")
    x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    cut = min(n, max(1, len(x) // 2)) if len(x) <= n else n
    return x[:cut], x[cut:], None


def check_calibration(calibration: str | None, resolved: Any) -> str:
    """'fashion-mnist' or the folder: refuse early (before any export) what calibration_for would refuse."""
    if calibration is None:
        from pocketvit.data.fashion_mnist import LABELS

        if list(resolved.labels) == list(LABELS):
            calibration = "fashion-mnist"
        else:
            raise DataError("--quantize int8 needs calibration images from the model's training data: pass "
                            "--calibration DIR (a folder of a few hundred training images, never test images), or "
                            "--calibration fashion-mnist for Fashion-MNIST models")
    if calibration != "fashion-mnist" and not Path(calibration).is_dir():
        raise DataError(f"--calibration {calibration}: not a folder; pass a folder of training images or "
                        "'fashion-mnist'")
    return calibration


def calibration_for(calibration: str | None, resolved: Any, n: int = 256, held: int = 1000, seed: int = 0):
    """(calibration images, held-out images, held-out labels or None) for `pocketvit export --quantize`."""
    calibration = check_calibration(calibration, resolved)
    if calibration == "fashion-mnist":
        return _fashion_mnist(resolved.input, n, held, seed)
    return _folder(Path(calibration), resolved.input, n, held)


def int8_exporter(calibration: str | None, *, budget: float = 0.005, sensitivity: bool = True,
                  n: int = 256, min_agreement: float = 0.99, coreml_nbits: int | None = None,
                  images: tuple[Any, Any, Any] | None = None) -> Callable[..., Iterator[tuple[str, Any, dict[str, Any]]]]:
    """A callable for export_to_bundle(quantize=...): yields (target, ExportedFile or None, result row).
    coreml_nbits: palettize the Core ML weights (k-means, that many bits) instead of int8 weights.
    images: (calibration, held-out, held-out labels or None) tensors given directly instead of `calibration`
    (the zoo's random images, for checking the int8 path of random-weight models)."""

    def run(resolved: Any, targets: list[str], staging: Path, say: Callable[[str], None]):
        from pocketvit.export._common import file_extension
        from pocketvit.export.describe import backend_summary
        from pocketvit.export.quantize import config_for, quantize_export

        calib, hx, hy = images if images is not None else calibration_for(calibration, resolved, n)
        example = resolved.example()
        float_layers: list[str] = []
        plan: dict[str, Any] = {"calibration_images": len(calib), "float_layers": []}
        if sensitivity and len(hx):
            from pocketvit.export.quantize.pt2e import xnnpack_quantizer
            from pocketvit.export.quantize.sensitivity import choose_float_layers

            say(f"sensitivity pass: {len(calib)} calibration / {len(hx)} held-out images, budget {budget}")
            result = choose_float_layers(resolved.model, example, calib, hx, hy, xnnpack_quantizer(), budget,
                                         min_agreement=min_agreement)
            float_layers = result.float_layers
            plan = {"calibration_images": len(calib), "float_layers": float_layers,
                    "sensitivity": {k: v for k, v in result.to_dict().items() if k != "ranking"}}
        for base in targets:
            t = f"{base}-int8"
            say(f"exporting {resolved.name} to {t} ...")
            t0 = time.perf_counter()
            try:
                opts = {"mode": "palettize", "nbits": coreml_nbits} if base == "coreml" and coreml_nbits else {}
                f = quantize_export(resolved.model, example, calib, config_for(base, **opts),
                                    staging / "int8" / f"model{file_extension(base)}", float_layers=float_layers,
                                    model_name=resolved.name)
            except (ExportError, MissingExtraError) as e:
                yield t, None, {"status": "failed", "error": str(e), "seconds": round(time.perf_counter() - t0, 2)}
                say(f"  {t}: failed")
                continue
            f.info["plan"] = plan
            say(f"  {t}: done in {time.perf_counter() - t0:.1f} s")
            yield t, f, {"status": "exported", "runtime": f.runtime, "precision": f.precision,
                         "seconds": round(time.perf_counter() - t0, 2), "backend": f.info,
                         "summary": backend_summary(t, f.info) + f"; {len(float_layers)} layer(s) kept in float"}

    run.check = (lambda resolved: None) if images is not None else (
        lambda resolved: check_calibration(calibration, resolved))  # before any export starts
    return run
