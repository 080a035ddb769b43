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
The segments may also live in files of their own, listed in ``files[target]["segments"]``
([{method, path, sha256}], one file per segment for ONNX / Core ML, or one shared file): then the
target's main file stays the unsegmented model, and ``use_exits=False`` (``--no-exits``) runs it.
"""

from __future__ import annotations

import importlib.util
import math
import os
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pocketvit.errors import BundleError, InputError, MissingExtraError

from .backends import Backend, open_backend, open_segments
from .bundle import Bundle
from .preprocessing import fast_preprocessor, prepare_image, preprocess_array
from .scores import l2_normalize, pairwise_sum, small_softmax_exact, softmax

_FLOAT32 = np.dtype(np.float32)
_INF = math.inf
_F32 = struct.Struct("f")  # rounds a Python float to float32 and back, cheaper than a numpy scalar
_isnan = math.isnan
_clock = time.perf_counter

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
        self.input_spec = bundle.input_spec_of(target)  # a drop-in file may take RGB for a gray model
        self.input_form = bundle.input_form(target)
        self.outputs = bundle.outputs_of(target)  # a drop-in file outputs probabilities
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
        # zero-shot: softmax(logit_scale * cosine); CLIP's 100 unless the manifest says otherwise
        self.logit_scale = float(bundle.manifest.get("logit_scale", 100.0))
        if self.task == "zero-shot":
            self.text_embeddings = self._load_text_embeddings()
        # predict()'s fast path, set up once: preprocessing for an image that already has the
        # input size (see fast_preprocessor), and, for a classifier without an exit chain, one
        # runtime call and the postprocessing inlined. Same outputs as the general path.
        self._fast_pre = fast_preprocessor(self.input_spec, self.input_form)
        self._fast_post = self.task == "classify" and not (self.exits or self._full_chain)
        self._num_labels = len(self.labels) if self.labels else 0
        self._apply_softmax = self.outputs != "probabilities"
        self._small_softmax = (
            self.task == "classify" and self._apply_softmax and small_softmax_exact(self._num_labels)
        )
        self._steps: tuple | None = None  # (chain, [(segment runner, threshold, exit name)]), see _infer
        self._row_shape = (1, self._num_labels)

    @property
    def fallbacks(self) -> list[str]:
        """Every fallback the runtime took in place of what was asked (a provider, a thread count, a delegate); the
        runtime API never prints them, the CLI says them once."""
        return list(self.backend.fallbacks)

    def runtime_info(self) -> dict:
        """How this target runs here: runtime, threads, provider / delegate / thread pool, fallbacks."""
        return self.backend.describe()

    def use_prompts(self, prompts: list[str], num_threads: int | None = None) -> None:
        """Zero-shot only: score an image against these prompts. A bundle that carries a text encoder
        embeds them as typed, on its runtime (free text: "a red dress"); otherwise they must name some of
        the bundle's classes (``restrict_classes``)."""
        if self.task != "zero-shot":
            raise BundleError(f"{self.bundle.source}: prompts need a zero-shot bundle; this one is {self.task!r}")
        if not self.bundle.manifest.get("text_encoder"):
            return self.restrict_classes(prompts)
        from .text import TextEncoder

        prompts = list(dict.fromkeys(p.strip() for p in prompts if p.strip()))
        if not prompts:
            raise BundleError("no prompts given; pass some text, e.g. --prompts \"a red dress,a leather boot\"")
        with TextEncoder.from_bundle(self.bundle, runtime=self.runtime, num_threads=num_threads) as enc:
            self._set_classes(prompts, enc.encode(prompts))

    def restrict_classes(self, names: list[str]) -> None:
        """Zero-shot only: score an image against these of the bundle's classes (matched to the labels,
        case-insensitively, a leading "a "/"an "/"the " ignored), from the stored class embeddings. An
        unknown name is an error naming the labels (free text needs a bundle with a text encoder)."""
        if self.task != "zero-shot":
            raise BundleError(f"{self.bundle.source}: prompts need a zero-shot bundle; this one is {self.task!r}")
        from .text import FREE_TEXT_HINT

        key = {_prompt_key(label): i for i, label in enumerate(self.labels)}
        unknown = [n for n in names if _prompt_key(n) not in key]
        if unknown or not names:
            raise BundleError(
                f"prompt(s) {unknown or names} match none of this bundle's classes ({', '.join(self.labels)}); "
                f"this bundle carries the text embeddings of these classes only, no text encoder — {FREE_TEXT_HINT}")
        rows = list(dict.fromkeys(key[_prompt_key(n)] for n in names))
        self._set_classes([self.labels[i] for i in rows], self.text_embeddings[rows])

    def _set_classes(self, labels: list[str], embeddings: np.ndarray) -> None:
        if embeddings.shape[1] != self.text_embeddings.shape[1]:
            raise BundleError(f"{self.bundle.source}: the text encoder gives {embeddings.shape[1]}-d embeddings, the "
                              f"image model's space is {self.text_embeddings.shape[1]}-d; rebuild the bundle")
        self.labels = labels
        self.text_embeddings = np.asarray(embeddings, dtype=np.float32)
        self._num_labels = len(self.labels)
        self._row_shape = (1, self._num_labels)

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
        if self._fast_pre is not None:
            x = self._fast_pre(image, input_color)
            if x is not None:
                return x
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
        steps = self._steps
        if steps is None or steps[0] is not chain:
            # built once per chain: each segment's runner (checked once, called with the runtime's own
            # tensors, so nothing is converted between segments) and its exit's threshold
            steps = self._steps = (chain, [(self.backend.segment_runner(self._method_of(e)), e.get("threshold"),
                                            e.get("name")) for e in chain])
        backend = self.backend
        carry = [backend.to_native(x)]
        ms = 0.0
        last = len(chain) - 1
        for i, (run, th, name) in enumerate(steps[1]):
            t0 = _clock()
            outs = run(carry)
            head = backend.to_numpy(outs[-1])
            ms += (_clock() - t0) * 1e3
            if i == last:
                return (head.copy() if backend.outputs_alias else head), None, ms
            if not force_full and th is not None and self._top1_probability(head) >= th:
                return (head.copy() if backend.outputs_alias else head), name, ms
            carry = outs[:-1]
        raise AssertionError("unreachable")  # pragma: no cover

    # -- postprocessing
    def _top1_probability(self, y: np.ndarray) -> float:
        """``float(self._scores(y)[0].max())`` for an exit's decision, the same float for a short float32
        row at a fraction of the cost: the largest probability is ``exp(0) / s = 1 / s`` with ``s`` the
        sum of ``exp(v - max)``, computed as ``softmax_list`` does (numpy's exp, numpy's summation
        order) and rounded to float32 like the softmax's output."""
        if self._small_softmax and y.shape == self._row_shape and y.dtype == _FLOAT32:
            pl = y.tolist()[0]
            s = pairwise_sum(np.exp(list(map(max(pl).__rsub__, pl))).tolist())
            if 1.0 <= s < _INF:  # no NaN or inf among the logits
                return _F32.unpack(_F32.pack(1.0 / s))[0]
        return float(self._scores(y)[0].max())

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
            return softmax(self.logit_scale * emb @ self.text_embeddings.T)
        if y.shape[1] != len(self.labels):
            raise BundleError(
                f"{self.bundle.source}: target {self.target!r} outputs {y.shape[1]} scores but the manifest "
                f"has {len(self.labels)} labels; rebuild the bundle"
            )
        return y if self.outputs == "probabilities" else softmax(y)

    def _top(self, p: np.ndarray, topk: int, pl: list | None = None) -> tuple[int, list[tuple[str, float]]]:
        """(index of the best class, the k best (label, probability) best first), ties in class
        order: the order of ``np.argsort(-p, kind="stable")``. Up to 20 classes without NaN that is
        Python's stable sort (reverse=True keeps equal items in order), cheaper than numpy on so
        few values. ``pl``: ``p.tolist()`` when the caller has it."""
        n = p.shape[0]
        k = max(1, min(int(topk), n))
        labels = self.labels
        if n <= 20:
            if pl is None:
                pl = p.tolist()
            if not _isnan(sum(pl)):  # no NaN (numpy sorts NaN last; Python's sort would not)
                order = sorted(range(n), key=pl.__getitem__, reverse=True)
                return order[0], [(labels[i], pl[i]) for i in order[:k]]
        order = np.argsort(-p, kind="stable")[:k]
        return int(order[0]), [(labels[i], float(p[i])) for i in order]

    def _make(self, y: np.ndarray, exit_name: str | None, ms: float, topk: int) -> Prediction:
        """One prediction from a raw output row y [1, ...]."""
        if self.task == "embed":
            emb = l2_normalize(np.asarray(y, dtype=np.float32).reshape(1, -1))[0]
            return Prediction(label=None, score=None, topk=[], exit=exit_name, latency_ms=ms, embedding=emb)
        p = self._scores(y)[0]
        best, top = self._top(p, topk)
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
            index=best,
            scores=p,
            embedding=emb,
        )

    def predict_array(self, x: np.ndarray, topk: int = 5, stop_early: bool = True) -> list[Prediction]:
        """Predictions for an already preprocessed batch (``Predictor.preprocess`` output, stacked).
        ``stop_early=False`` runs every segment of an exit chain (the final head answers).

        Raises InputError for a batch this target cannot take (rank, shape, dtype, NaN or infinite values)."""
        return self._predict_batch(self.check_batch(x), topk, stop_early)

    def batch_shape(self) -> tuple[str | int, ...]:
        """The shape ``preprocess`` gives a batch of N images for this target: (N, C, H, W) or (N, H, W, C)."""
        spec = self.input_spec
        h, w = (spec.get("crop") or [spec["height"], spec["width"]])[:2]
        c = int(spec["channels"])
        nchw = self.input_form == "float-nchw" and spec.get("layout", "NCHW") == "NCHW"
        return ("N", c, int(h), int(w)) if nchw else ("N", int(h), int(w), c)

    def check_batch(self, x: Any) -> np.ndarray:
        """``x`` as a numpy batch this target takes, or InputError naming what is wrong and the fix."""
        try:
            a = np.asarray(x)
        except (ValueError, TypeError) as e:
            raise InputError(f"predict_array takes a numpy batch, got {type(x).__name__} ({e})") from None
        want = self.batch_shape()
        shown = "[" + ", ".join(map(str, want)) + "]"
        how = "Predictor.preprocess(image) gives one image's batch; predict(image) takes the image itself"
        if a.ndim != 4 or tuple(a.shape[1:]) != tuple(want[1:]):
            raise InputError(f"target {self.target!r} takes a batch of shape {shown}, got {a.shape}; {how}")
        if a.shape[0] == 0:
            raise InputError(f"the batch is empty (shape {a.shape}); pass at least one preprocessed image")
        if self.input_form == "uint8-nhwc":
            if a.dtype != np.uint8:
                raise InputError(f"target {self.target!r} takes uint8 pixels (0..255), got dtype {a.dtype}; {how}")
        elif a.dtype.kind != "f":
            raise InputError(f"target {self.target!r} takes preprocessed float32 input, got dtype {a.dtype} "
                             f"(raw pixels?); {how}")
        elif not np.isfinite(a).all():
            raise InputError(f"the batch holds NaN or infinite values; preprocessing gives finite values — {how}")
        return a

    def _predict_batch(self, x: np.ndarray, topk: int, stop_early: bool = True) -> list[Prediction]:
        if self.exits or self._full_chain:
            preds = []
            total = 0.0
            for i in range(x.shape[0]):
                y, ex, ms = self._infer(x[i : i + 1], force_full=not stop_early)
                total += ms
                if self.task == "classify":  # the fast postprocessing predict() uses without exits
                    p = self._make_classify(y, ms, topk)
                    p.exit = ex
                else:
                    p = self._make(y, ex, ms, topk)
                preds.append(p)
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
        fast = self._fast_pre
        if fast is not None:
            # an image of the model's input size: table-lookup preprocessing (same values as the
            # general path) and, for a classifier without exits, the runtime call and the
            # postprocessing inline (what predict_array + _infer + _make do for a batch of 1)
            t0 = _clock()
            x = fast(image, input_color)
            if x is not None:
                self.last_preprocess_ms = (_clock() - t0) * 1e3
                return self.predict_tensor(x, topk)
        return self._predict_batch(self._preprocess_many([image], input_color), topk)[0]

    def predict_tensor(self, x: np.ndarray, topk: int = 5) -> Prediction:
        """``predict`` for one image already through ``preprocess`` (the demo preprocesses the next frame on
        its capture thread while this one runs): the same Prediction. ``last_preprocess_ms`` is not touched."""
        if not self._fast_post:
            return self._predict_batch(x, topk)[0]
        t1 = _clock()
        y = self.backend.run(x)
        ms = (_clock() - t1) * 1e3
        self.last_latency_ms = ms
        return self._make_classify(y, ms, topk)

    def _make_classify(self, y: np.ndarray, ms: float, topk: int) -> Prediction:
        """``_make(y[0:1], None, ms, topk)`` for a classifier: the same Prediction, bit for bit.

        Right after the runtime call the CPU caches hold the model, not numpy's ufunc and
        reduction code nor this module's: every numpy call, and every Python call (list
        comprehensions included, before Python 3.12), costs microseconds here. So for a float32
        [1, n] output the softmax is ``softmax_list``'s steps written out with map (one numpy
        exp, numpy's summation order, see there) and the top-k is ``_top``'s Python stable sort,
        inline. Anything else takes the general path."""
        if (
            type(y) is np.ndarray
            and y.shape == self._row_shape
            and (y.dtype is _FLOAT32 or y.dtype == _FLOAT32)
        ):
            pl = y.tolist()[0]
            if self._small_softmax:  # n <= SMALL_SOFTMAX_MAX, checked against numpy's softmax
                e = np.exp(list(map(max(pl).__rsub__, pl))).tolist()  # v - max for each v
                s = pairwise_sum(e)
                if not 1.0 <= s < _INF:  # NaN or inf among the logits
                    return self._make(y, None, ms, topk)
                p = np.array(list(map(s.__rtruediv__, e)), dtype=np.float32)  # v / s for each v
                pl = p.tolist()
            elif self._apply_softmax:
                return self._make(y, None, ms, topk)
            else:  # the model outputs probabilities
                p = y[0]
            n = len(pl)
            if n <= 20 and not _isnan(sum(pl)):  # no NaN: Python's stable sort gives np.argsort's order
                k = topk if type(topk) is int and 0 < topk <= n else max(1, min(int(topk), n))
                order = sorted(range(n), key=pl.__getitem__, reverse=True)
                best = order[:k]
                top = list(zip(map(self.labels.__getitem__, best), map(pl.__getitem__, best)))
                return Prediction(top[0][0], top[0][1], top, None, ms, order[0], p)
            best, top = self._top(p, topk, pl)
            return Prediction(top[0][0], top[0][1], top, None, ms, best, p)
        return self._make(np.asarray(y)[0:1], None, ms, topk)

    def predict_batch(
        self, images: Sequence[Any], input_color: str = "BGR", topk: int = 5
    ) -> list[Prediction]:
        """Several images in one runtime call (one by one when the model's batch is fixed at 1, or
        with early exits). Each Prediction's latency_ms is its share of the batch's runtime time."""
        if len(images) == 0:
            return []
        return self._predict_batch(self._preprocess_many(list(images), input_color), topk)

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
    if use_exits and info.get("segments"):
        # the early-exit program lives in its own file(s); the main file stays the unsegmented model
        try:
            backend = open_segments(info["runtime"], backend, bundle.segment_paths(target),
                                    num_threads=num_threads, **backend_options)
        except BaseException:
            backend.close()
            raise
    try:
        p = Predictor(bundle, target, backend, use_exits=use_exits)
        if warmup:
            p.warmup(warmup)
    except BaseException:
        backend.close()
        raise
    return p


def _prompt_key(text: str) -> str:
    words = text.strip().lower().split()
    if len(words) > 1 and words[0] in ("a", "an", "the"):
        words = words[1:]
    return " ".join(words)
