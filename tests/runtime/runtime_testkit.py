"""Helpers for the runtime tests: tiny real models, their exports, bundles, synthetic images."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np

LABELS = [f"class{i}" for i in range(10)]
GRAY_SPEC = {
    "height": 28,
    "width": 28,
    "channels": 1,
    "layout": "NCHW",
    "dtype": "float32",
    "color_order": "GRAY",
    "resize": 28,
    "crop": [28, 28],
    "scale": 1 / 255,
    "mean": [0.2860],
    "std": [0.3530],
}


def _torch():
    import torch

    torch.manual_seed(0)
    return torch


def make_models():
    """(full, seg0, seg1): full(x) == seg1(seg0(x)[0]); seg0 also returns an early-exit head."""
    torch = _torch()
    nn = torch.nn

    class Seg0(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 3, stride=2, padding=1)
            self.head = nn.Linear(8, 10)

        def forward(self, x):
            f = torch.relu(self.conv(x))
            return f, self.head(f.mean((2, 3))) * 4.0

    class Seg1(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(8, 16, 3, stride=2, padding=1)
            self.fc = nn.Linear(16, 10)

        def forward(self, f):
            return self.fc(torch.relu(self.conv(f)).mean((2, 3))) * 8.0

    class Full(nn.Module):
        def __init__(self, s0, s1):
            super().__init__()
            self.s0, self.s1 = s0, s1

        def forward(self, x):
            return self.s1(self.s0(x)[0])

    s0, s1 = Seg0().eval(), Seg1().eval()
    return Full(s0, s1).eval(), s0, s1


@contextlib.contextmanager
def quiet():
    """The converters print progress; keep the test log readable."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def export_onnx(model, example, path):
    torch = _torch()
    with quiet():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            opset_version=17,
        )


def export_tflite(model, example, path):
    import litert_torch

    with quiet():
        litert_torch.convert(model.eval(), (example,)).export(str(path))


def export_pte(programs: dict, path):
    """programs: {method name: (module, example args)} -> one .pte with one method each."""
    torch = _torch()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    with quiet():
        eps = {name: torch.export.export(m, args) for name, (m, args) in programs.items()}
        prog = to_edge_transform_and_lower(eps, partitioner=[XnnpackPartitioner()]).to_executorch()
    Path(path).write_bytes(prog.buffer)


def random_images(n, h=34, w=40, seed=0):
    """Smooth-ish random BGR uint8 images (not square, so resize + crop do something)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3)).astype(np.float32)
        img = np.kron(small, np.ones((4, 4, 1)))[:h, :w]
        out.append(np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8))
    return out


def write_bundle(root: Path, files: dict, **manifest):
    """files: {target: (filename, runtime, precision, extra)} already written under root."""
    from pocketvit.runtime import file_entry, write_manifest

    m = {
        "format_version": 1,
        "name": "tiny",
        "task": "classify",
        "labels": LABELS,
        "input": GRAY_SPEC,
        "outputs": "logits",
        "exits": [],
        "text_embeddings": None,
        "metrics": {},
        "created_with": "pocketvit tests",
    }
    m.update(manifest)
    m["files"] = {
        t: file_entry(root, t, fname, rt, prec, **extra) for t, (fname, rt, prec, extra) in files.items()
    }
    write_manifest(root, m)
    return root


def eager_probs(model, x: np.ndarray) -> np.ndarray:
    torch = _torch()
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(x)), dim=-1).numpy()
