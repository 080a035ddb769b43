"""Predictor: bundle + backend + preprocessing + early exits + postprocessing. Torch-free
(except inside the ExecuTorch backend, see backends/executorch.py).

Early exits (manifest ``exits``, or a per-target override ``files[target]["exits"]``): an ordered
chain of segments, each a method (ExecuTorch) / signature (LiteRT) / function (Core ML) of the
target's model file::

    "exits": [{"name": "block4", "after_block": 4, "method": "seg0", "threshold": 0.85},
              {"name": "block8", "after_block": 8, "method": "seg1", "threshold": 0.90},
              {"name": "final",                   "method": "seg2", "threshold": null}]

Segment 0 takes the preprocessed image; segment i > 0 takes every output of segment i-1 but its
last. Each segment's last output is that exit's logits (or embedding, for zero-shot). The chain
stops at the first segment whose top-1 probability reaches its threshold, or at the last one.
``Prediction.exit`` is the name of the exit taken, or None when the final segment answered.
With no exits, or a model file that lacks the segment methods, the model's "forward" runs.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pocketvit.errors import BundleError, MissingExtraError

from .backends import Backend, open_backend
from .manifest import Bundle
from .preprocessing import prepare_image, preprocess_array

_EXTRA_OF = {
    "onnx": ("onnxruntime", "onnx"),
    "litert": ("ai-edge-litert", "litert"),
    "executorch": ("executorch", "executorch"),
    "coreml": ("coremltools", "coreml"),
}


@dataclass
class Prediction:
    label: str | None
    score: float | None
    topk: list[tuple[str, float]] = field(default_factory=list)
    exit: str | None = None
    latency_ms: float = 0.0
    index: int | None = None
    scores: np.ndarray | None = field(default=None, repr=False)
    embedding: np.ndarray | None = field(default=None, repr=False)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, 1e-12)


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _runtime_available(runtime: str) -> bool:
    mods = {
        "onnx": ("onnxruntime",),
        "litert": ("ai_edge_litert", "tflite_runtime"),
        "executorch": ("executorch",),
        "coreml": ("coremltools",),
    }[runtime]
    if runtime == "coreml" and sys.platform != "darwin":
        return False
    return any(_module_available(m) for m in mods)


def choose_target(bundle: Bundle) -> str:
    """The target load() uses when given none: onnx, then litert, then executorch (coreml on macOS),
    skipping runtimes whose package is not installed; within a runtime, the manifest's order."""
    order = ["onnx", "litert", "executorch"] + (["coreml"] if sys.platform == "darwin" else [])
    for rt in order:
        if not _runtime_available(rt):
            continue
        for t in bundle.targets:
            if bundle.runtime_of(t) == rt:
                return t
    runtimes = sorted({bundle.runtime_of(t) for t in bundle.targets})
    rt = runtimes[0]
    if rt == "coreml" and len(runtimes) == 1:
        raise BundleError(
            f"{bundle.source}: the bundle only has Core ML targets ({', '.join(bundle.targets)}), which "
            "execute only on macOS/iOS; rebuild it with an onnx, litert or executorch target"
        )
    module, extra = _EXTRA_OF[rt]
    raise MissingExtraError(
        module, extra, f"no runtime for this bundle's targets ({', '.join(bundle.targets)}) is installed"
    )


class Predictor:
    """Runs one target of a bundle. Build it with ``load(...)``."""

    def __init__(self, bundle: Bundle, target: str, backend: Backend, use_exits: bool = True):
        self.bundle = bundle
        self.target = target
        self.backend = backend
        self.runtime = bundle.runtime_of(target)
        self.task = bundle.task
        self.labels = bundle.labels
        self.input_spec = bundle.input_spec
        self.input_form = bundle.input_form(target)
        self.outputs = bundle.outputs
        self.last_preprocess_ms = 0.0
        self.last_latency_ms = 0.0
        info = bundle.file_info(target)
        exits = info.get("exits", bundle.exits)
        have = set(backend.method_names)
        chain = list(exits) if exits and all(self._method_of(e) in have for e in exits) else []
        # exits: the chain with its thresholds. With use_exits=False the model's forward runs, or,
        # in a file made only of segments, the whole chain with no early stop.
        self.exits: list[dict] = chain if use_exits else []
        self._full_chain: list[dict] = chain if (chain and not use_exits and not backend.has_forward) else []
        self.text_embeddings: np.ndarray | None = None
        if self.task == "zero-shot":
            self.text_embeddings = self._load_text_embeddings()

    # -- setup helpers
    @staticmethod
    def _method_of(e: dict) -> str:
        return e.get("method") or e.get("signature")

    def _load_text_embeddings(self) -> np.ndarray:
        path = self.bundle.text_embeddings_path()
        try:
            t = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise BundleError(f"{path}: cannot read the text embeddings ({e}); rebuild the bundle") from None
        if t.ndim != 2 or t.shape[0] != len(self.labels):
            raise BundleError(
                f"{path}: text embeddings have shape {t.shape}, expected [num_labels={len(self.labels)}, dim]; "
                "rebuild the bundle"
            )
        return t.astype(np.float32)

    # -- preprocessing
    def preprocess(self, image: Any, input_color: str = "BGR") -> np.ndarray:
        """One image -> the batch of 1 this target's model takes."""
        return preprocess_array(
            prepare_image(image, self.input_spec, input_color), self.input_spec, self.input_form
        )

    def _preprocess_many(self, images: Sequence[Any], input_color: str) -> np.ndarray:
        t0 = time.perf_counter()
        crops = np.stack([prepare_image(im, self.input_spec, input_color) for im in images])
        x = preprocess_array(crops, self.input_spec, self.input_form)
        self.last_preprocess_ms = (time.perf_counter() - t0) * 1e3
        return x

    # -- inference
    def run(self, x: np.ndarray) -> np.ndarray:
        """The raw output of the full model on an already preprocessed batch: its forward, or the
        whole exit chain (no early stop) for a file made only of segments."""
        chain = self.exits or self._full_chain
        if self.backend.has_forward or not chain:
            return self.backend.run(x)
        return np.concatenate([self._infer(x[i : i + 1], force_full=True)[0] for i in range(len(x))])

    def _infer(self, x: np.ndarray, force_full: bool = False) -> tuple[np.ndarray, str | None, float]:
        """Returns (raw output [1, ...], exit name or None, runtime ms) for a batch of 1 with exits,
        or for any batch without exits."""
        chain = self.exits or self._full_chain
        if not chain:
            t0 = time.perf_counter()
            y = self.backend.run(x)
            return y, None, (time.perf_counter() - t0) * 1e3
        force_full = force_full or not self.exits
        carry: list[np.ndarray] = [x]
        ms = 0.0
        last = len(chain) - 1
        for i, e in enumerate(chain):
            t0 = time.perf_counter()
            outs = self.backend.run_method(self._method_of(e), carry)
            ms += (time.perf_counter() - t0) * 1e3
            head = outs[-1]
            if i == last:
                return head, None, ms
            th = e.get("threshold")
            if not force_full and th is not None and float(self._scores(head)[0].max()) >= float(th):
                return head, e["name"], ms
            carry = list(outs[:-1])
        raise AssertionError("unreachable")  # pragma: no cover

    # -- postprocessing
    def _scores(self, y: np.ndarray) -> np.ndarray:
        """Raw output [N, ...] -> class probabilities [N, num_labels] (classify / zero-shot)."""
        y = np.asarray(y, dtype=np.float32).reshape(y.shape[0], -1)
        if self.task == "zero-shot":
            emb = l2_normalize(y)
            if emb.shape[1] != self.text_embeddings.shape[1]:
                raise BundleError(
                    f"{self.bundle.source}: the model's embedding has {emb.shape[1]} values but the text "
                    f"embeddings have {self.text_embeddings.shape[1]}; rebuild the bundle"
                )
            return softmax(100.0 * emb @ self.text_embeddings.T)
        if y.shape[1] != len(self.labels):
            raise BundleError(
                f"{self.bundle.source}: target {self.target!r} outputs {y.shape[1]} scores but the manifest "
                f"has {len(self.labels)} labels; rebuild the bundle"
            )
        return y if self.outputs == "probabilities" else softmax(y)

    def _make(self, y: np.ndarray, exit_name: str | None, ms: float, topk: int) -> Prediction:
        """One prediction from a raw output row y [1, ...]."""
        if self.task == "embed":
            emb = l2_normalize(np.asarray(y, dtype=np.float32).reshape(1, -1))[0]
            return Prediction(label=None, score=None, topk=[], exit=exit_name, latency_ms=ms, embedding=emb)
        p = self._scores(y)[0]
        k = max(1, min(int(topk), p.shape[0]))
        order = np.argsort(-p, kind="stable")[:k]
        top = [(self.labels[i], float(p[i])) for i in order]
        emb = (
            l2_normalize(np.asarray(y, dtype=np.float32).reshape(1, -1))[0]
            if self.task == "zero-shot"
            else None
        )
        return Prediction(
            label=top[0][0],
            score=top[0][1],
            topk=top,
            exit=exit_name,
            latency_ms=ms,
            index=int(order[0]),
            scores=p,
            embedding=emb,
        )

    def predict_array(self, x: np.ndarray, topk: int = 5) -> list[Prediction]:
        """Predictions for an already preprocessed batch (``Predictor.preprocess`` output, stacked)."""
        x = np.asarray(x)
        if self.exits or self._full_chain:
            preds = []
            total = 0.0
            for i in range(x.shape[0]):
                y, ex, ms = self._infer(x[i : i + 1])
                total += ms
                preds.append(self._make(y, ex, ms, topk))
            self.last_latency_ms = total
            return preds
        y, _, ms = self._infer(x)
        self.last_latency_ms = ms
        per = ms / x.shape[0]
        return [self._make(y[i : i + 1], None, per, topk) for i in range(x.shape[0])]

    def predict(self, image: Any, input_color: str = "BGR", topk: int = 5) -> Prediction:
        """One image (HxWxC uint8, BGR by default; HxW gray; PIL image; or a file path).

        ``latency_ms`` is the runtime call alone; ``last_preprocess_ms`` the preprocessing.
        """
        return self.predict_array(self._preprocess_many([image], input_color), topk)[0]

    def predict_batch(
        self, images: Sequence[Any], input_color: str = "BGR", topk: int = 5
    ) -> list[Prediction]:
        """Several images in one runtime call (one by one when the model's batch is fixed at 1, or
        with early exits). Each Prediction's latency_ms is its share of the batch's runtime time."""
        if len(images) == 0:
            return []
        return self.predict_array(self._preprocess_many(list(images), input_color), topk)

    def warmup(self, n: int = 1) -> None:
        """Run ``n`` inferences on a blank image (every exit segment included)."""
        spec = self.input_spec
        blank = np.zeros((spec["height"], spec["width"], spec["channels"]), dtype=np.uint8)
        x = preprocess_array(blank, spec, self.input_form)
        for _ in range(max(0, int(n))):
            self._infer(x, force_full=True)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"Predictor(bundle={str(self.bundle.root)!r}, target={self.target!r}, task={self.task!r})"


def load(
    bundle_path: str | os.PathLike | Bundle,
    target: str | None = None,
    num_threads: int | None = None,
    warmup: int = 1,
    use_exits: bool = True,
    verify_all: bool = False,
    **backend_options: Any,
) -> Predictor:
    """Open a bundle (folder or .zip) and one of its targets.

    ``target`` None picks the first installed runtime among onnx, litert, executorch (see
    ``choose_target``). The target's model file (and text_embeddings.npy) is sha256-checked before
    it reaches the runtime; ``verify_all=True`` checks every file of the bundle.
    """
    bundle = bundle_path if isinstance(bundle_path, Bundle) else Bundle.open(bundle_path, verify=verify_all)
    if target is None:
        target = choose_target(bundle)
    info = bundle.file_info(target)  # raises, listing the bundle's targets, when it has no such target
    path = bundle.model_path(target)
    backend = open_backend(info["runtime"], path, num_threads=num_threads, **backend_options)
    try:
        p = Predictor(bundle, target, backend, use_exits=use_exits)
        if warmup:
            p.warmup(warmup)
    except BaseException:
        backend.close()
        raise
    return p
