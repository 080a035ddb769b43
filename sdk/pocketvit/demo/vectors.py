"""Test vectors for re-implementations of the bundle's pre/postprocessing (the Kotlin one in
apps/android, Swift, ...): the Python runtime is the reference they must match.

``write_vectors(bundle, out)`` writes one folder per case:

    manifest.json   the bundle's own manifest, or {"input": {...}, "labels": [...]} for the extra
                    preprocessing-only cases that cover what this bundle does not (RGB, mean/std per
                    channel, resize + crop, padding, NHWC, BGRA input, RGB->GRAY)
    case.json       {name, height, width, channels, input_color, tensor_shape, has_logits, topk, resize_impl}
    image.raw       the input image, HxWxC uint8, row-major, channels in ``input_color`` order
    tensor.bin      the expected model input, float32 little-endian, in ``tensor_shape``
    logits.bin      (bundle cases) the raw model output for that tensor, float32 little-endian
    topk.json       (bundle cases) [[label, probability], ...] as Predictor.predict gives them

Image files, cameras and torch are not involved: only pocketvit.runtime and numpy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from pocketvit.runtime import Bundle, load, preprocess
from pocketvit.runtime.images import pil_image_module

# (name, input spec, image shape HxWxC, input colour): preprocessing-only cases.
EXTRA_CASES = [
    (
        "rgb-resize-crop",
        {"height": 36, "width": 36, "channels": 3, "layout": "NCHW", "dtype": "float32", "color_order": "RGB",
         "resize": 40, "crop": [36, 36], "scale": 1 / 255, "mean": [0.485, 0.456, 0.406],
         "std": [0.229, 0.224, 0.225]},
        (61, 97, 3),
        "BGR",
    ),
    (
        "bgr-nhwc-fixed-size-bgra-input",
        {"height": 24, "width": 32, "channels": 3, "layout": "NHWC", "dtype": "float32", "color_order": "BGR",
         "resize": [24, 32], "crop": None, "scale": 1 / 255, "mean": None, "std": None},
        (50, 45, 4),
        "BGR",
    ),
    (
        "gray-from-rgb-upscale",
        {"height": 16, "width": 16, "channels": 1, "layout": "NCHW", "dtype": "float32", "color_order": "GRAY",
         "resize": 16, "crop": [16, 16], "scale": 1 / 255, "mean": [0.5], "std": [0.25]},
        (11, 13, 3),
        "RGB",
    ),
    (
        "gray-pad",
        {"height": 24, "width": 24, "channels": 1, "layout": "NCHW", "dtype": "float32", "color_order": "GRAY",
         "resize": 20, "crop": [24, 24], "scale": 1 / 255, "mean": [0.2], "std": [0.3]},
        (30, 50, 1),
        "GRAY",
    ),
]


def synthetic_image(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """A deterministic image with edges, gradients and noise, so resizing has something to blur."""
    h, w, c = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = 127 + 100 * np.sin(xx / (w / 3.1) + c) * np.cos(yy / (h / 2.3))
    base = base + 60 * ((xx // 5 + yy // 7) % 2) - 30
    img = np.stack([base + 40 * k for k in range(c)], axis=2) + rng.normal(0, 12, (h, w, c))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _write_case(folder: Path, name: str, image: np.ndarray, color: str, tensor: np.ndarray,
                manifest: dict | Path, logits: np.ndarray | None = None, topk: list | None = None) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(manifest, Path):
        shutil.copyfile(manifest, folder / "manifest.json")
    else:
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    img = image if image.ndim == 3 else image[:, :, None]
    (folder / "image.raw").write_bytes(np.ascontiguousarray(img, dtype=np.uint8).tobytes())
    (folder / "tensor.bin").write_bytes(np.ascontiguousarray(tensor, dtype="<f4").tobytes())
    case = {
        "name": name,
        "height": int(img.shape[0]),
        "width": int(img.shape[1]),
        "channels": int(img.shape[2]),
        "input_color": color,
        "tensor_shape": [int(s) for s in tensor.shape],
        "has_logits": logits is not None,
        "topk": len(topk) if topk else 0,
        "resize_impl": "PIL" if pil_image_module() is not None else "numpy",
    }
    if logits is not None:
        (folder / "logits.bin").write_bytes(np.ascontiguousarray(logits, dtype="<f4").tobytes())
        (folder / "topk.json").write_text(json.dumps([[lab, float(s)] for lab, s in topk]) + "\n")
    (folder / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    return case


def write_vectors(bundle: str | Path | Bundle, out: str | Path, target: str | None = None, topk: int = 5) -> list[dict]:
    """Write the vectors (see module docstring) under ``out``; returns the case descriptions."""
    out = Path(out)
    b = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    cases = []
    with load(b, target=target) as p:
        spec = p.input_spec
        h, w = int(spec["height"]), int(spec["width"])
        bundle_cases = [
            (f"bundle-bgr-{h * 3 // 2 + 3}x{w + 9}", synthetic_image((h * 3 // 2 + 3, w + 9, 3), 1), "BGR"),
            (f"bundle-gray-{max(2, h * 2 // 3)}x{max(2, w * 6 // 7)}",
             synthetic_image((max(2, h * 2 // 3), max(2, w * 6 // 7), 1), 2)[:, :, 0], "GRAY"),
        ]
        if p.input_form != "float-nchw":
            raise ValueError(f"target {p.target} takes {p.input_form}; vectors cover float-nchw targets")
        for name, img, color in bundle_cases:
            x = p.preprocess(img, input_color=color)
            logits = np.asarray(p.run(x), dtype=np.float32)
            pred = p.predict_array(x, topk=topk)[0]
            cases.append(_write_case(out / name, name, img, color, x, b.root / "manifest.json", logits, pred.topk))
    for i, (name, spec, shape, color) in enumerate(EXTRA_CASES):
        img = synthetic_image(shape, 10 + i)
        x = preprocess(img, spec, input_color=color)
        cases.append(_write_case(out / name, name, img, color, x, {"input": spec, "labels": []}))
    return cases
