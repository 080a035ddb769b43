"""Torch-free device check for a bundle's LiteRT target (numpy + a TFLite interpreter only).

    python device_check.py record BUNDLE WORKDIR   # main venv: images + top-1 labels via ai_edge_litert
    python device_check.py check  BUNDLE WORKDIR   # device venv: same images via tflite_runtime, same labels?

`record` writes WORKDIR/images.npy (seeded uint8 images, a little larger than the model input so
the bundle's resize runs, in BGR as OpenCV gives them) and WORKDIR/expected.json. `check` asserts
that torch and ai_edge_litert are absent, that pocketvit.runtime fell back to tflite_runtime, and
that every top-1 label matches (scores within 1e-4). Exits non-zero with a message otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

N_IMAGES = 24
SEED = 0


def _images(spec: dict) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    h, w = round(spec["height"] * 1.5), round(spec["width"] * 1.5)
    noise = rng.integers(0, 256, (N_IMAGES // 2, h, w, 3), dtype=np.uint8)
    # smooth images too: random low-resolution patterns blown up (noise alone gives near-ties)
    small = rng.integers(0, 256, (N_IMAGES - N_IMAGES // 2, 4, 4, 3), dtype=np.uint8)
    smooth = np.repeat(np.repeat(small, -(-h // 4), axis=1), -(-w // 4), axis=2)[:, :h, :w]
    return np.ascontiguousarray(np.concatenate([noise, smooth]))


def _predict(bundle: str, images: np.ndarray) -> tuple[list, str]:
    from pocketvit.runtime import load

    p = load(bundle, target="litert", num_threads=1)
    preds = [p.predict(im, input_color="BGR") for im in images]
    module = getattr(p.backend, "interpreter_module", "?")
    p.close()
    return [{"label": r.label, "score": float(r.score), "top2": [float(s) for _, s in r.topk[:2]]} for r in preds], module


def record(bundle: str, work: Path) -> None:
    from pocketvit.runtime import Bundle

    images = _images(Bundle.open(bundle).input_spec)
    np.save(work / "images.npy", images)
    preds, module = _predict(bundle, images)
    (work / "expected.json").write_text(json.dumps({"interpreter": module, "predictions": preds}, indent=1))
    print(f"recorded {len(preds)} predictions with {module}")


def check(bundle: str, work: Path) -> None:
    problems = []
    for mod in ("torch", "ai_edge_litert"):
        if importlib.util.find_spec(mod) is not None:
            problems.append(f"{mod} is importable in the device venv; it must not be")
    if problems:
        sys.exit("device check FAILED: " + "; ".join(problems))
    expected = json.loads((work / "expected.json").read_text())["predictions"]
    images = np.load(work / "images.npy")
    preds, module = _predict(bundle, images)
    if not module.startswith("tflite_runtime"):
        sys.exit(f"device check FAILED: pocketvit.runtime used {module}, expected the tflite_runtime fallback")
    if "torch" in sys.modules:
        sys.exit("device check FAILED: torch got imported")
    mismatches = []
    for i, (got, want) in enumerate(zip(preds, expected)):
        near_tie = len(want["top2"]) == 2 and want["top2"][0] - want["top2"][1] < 1e-4
        if got["label"] != want["label"] and not near_tie:
            mismatches.append(f"image {i}: {got['label']} ({got['score']:.5f}) vs main venv {want['label']} ({want['score']:.5f})")
        elif abs(got["score"] - want["score"]) > 1e-4:
            mismatches.append(f"image {i}: score {got['score']:.6f} vs main venv {want['score']:.6f}")
    if len(preds) != len(expected) or mismatches:
        sys.exit("device check FAILED:\n  " + "\n  ".join(mismatches or ["different number of predictions"]))
    print(
        f"device check ok: {len(preds)} images, same top-1 labels as the main venv; interpreter {module}, "
        f"numpy {np.__version__}, torch not importable"
    )


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("record", "check"):
        sys.exit(__doc__)
    (record if sys.argv[1] == "record" else check)(sys.argv[2], Path(sys.argv[3]))
