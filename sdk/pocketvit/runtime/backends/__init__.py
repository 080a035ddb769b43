"""One backend per runtime, behind one small interface. Heavy runtimes are imported lazily.

    b = open_backend("onnx", "model.onnx", num_threads=2)
    y = b.run(x)                          # first output, numpy
    ys = b.run_method("seg0", [x])        # every output of a named method / signature
    step = b.segment_runner("seg0")       # the same for an exit chain, in the runtime's own tensors:
    ys = step([b.to_native(x)])           #   no conversion between segments; b.to_numpy(ys[-1])
    b.input_shape                         # (1, 1, 28, 28); None for a dynamic dimension
    b.close()

Which Python packages each backend needs (none of them needs torch, except ExecuTorch):
    onnx        onnxruntime
    litert      ai-edge-litert, or tflite-runtime on devices that only have that
    executorch  executorch (its Python runtime takes and returns torch tensors, so torch is
                imported inside this backend; the C++/Android/iOS runtimes do not need it)
    coreml      coremltools, on macOS only
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from pocketvit.errors import PocketVitError

RUNTIMES = ("onnx", "litert", "executorch", "coreml")


class RuntimeUnavailableError(PocketVitError):
    """The runtime cannot execute on this platform (e.g. Core ML off Apple platforms)."""

    exit_code = 5


class Backend:
    """Base class. Subclasses set ``runtime``, ``path``, ``input_shape``, ``input_dtype``,
    ``method_names``, ``has_forward`` and implement ``_run_forward(x)`` and ``run_method(name, inputs)``."""

    runtime: str = ""
    input_shape: tuple | None = None
    input_dtype: np.dtype | None = None
    method_names: tuple[str, ...] = ()
    has_forward: bool = True  # False for a file made only of named methods (early-exit segments)

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None):
        self.path = os.fspath(path)
        self.num_threads = num_threads

    # -- public
    def run(self, x: np.ndarray) -> np.ndarray:
        """Run the model's main entry point on a batch; returns its first output as numpy.

        When the model was exported with a fixed batch of 1 and ``x`` holds more, the samples
        are run one by one and the outputs stacked.
        """
        x = np.ascontiguousarray(x)
        if self.input_shape and self.input_shape[0] == 1 and x.shape[0] > 1:
            return np.concatenate([self._run_forward(x[i : i + 1]) for i in range(x.shape[0])], axis=0)
        return self._run_forward(x)

    def run_method(self, name: str, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    # -- exit chains: segment after segment with nothing converted in between
    outputs_alias = False  # True where an output lives in memory the next call of that method reuses

    def segment_runner(self, name: str) -> Callable[[list], list]:
        """A callable running method ``name`` on inputs in the runtime's own form (``to_native`` of
        an array, or a previous segment's outputs) and returning its outputs in that form. Checked
        once here, not per call; the default is ``run_method``."""
        if name not in self.method_names and not (name == "forward" and self.has_forward):
            raise self._unknown_method(name)
        return lambda inputs: self.run_method(name, inputs)

    def to_native(self, x: np.ndarray):
        """A preprocessed batch in the form ``segment_runner`` callables take."""
        return np.ascontiguousarray(x)

    def to_numpy(self, y) -> np.ndarray:
        """A ``segment_runner`` output as numpy (a view where the runtime allows: copy what you keep
        when ``outputs_alias``)."""
        return y

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, input_shape={self.input_shape})"

    # -- for subclasses
    def _run_forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _unknown_method(self, name: str) -> PocketVitError:
        from pocketvit.errors import BundleError

        return BundleError(
            f"{self.path}: the model has no method/signature {name!r}; it has: "
            f"{', '.join(self.method_names) or '(none)'}"
        )


class SegmentedBackend(Backend):
    """A model file plus the early-exit segments kept in other files (manifest ``files[t]["segments"]``).

    ``run`` is the main file's forward (the unsegmented model); ``run_method(seg)`` runs a segment:
    the method / signature of that name in its file, or the file's only graph (one ONNX or Core ML
    file per segment)."""

    def __init__(self, main: Backend, parts: dict[str, Backend]):
        self.main, self.parts = main, parts
        self.runtime, self.path, self.num_threads = main.runtime, main.path, main.num_threads
        self.input_shape, self.input_dtype = main.input_shape, main.input_dtype
        self.has_forward = main.has_forward
        self.outputs_alias = main.outputs_alias or any(b.outputs_alias for b in parts.values())
        self.method_names = tuple(dict.fromkeys((*main.method_names, *parts)))
        self._inner = {m: (b, m if m in b.method_names else "forward") for m, b in parts.items()}

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.main.run(x)

    def _run_forward(self, x: np.ndarray) -> np.ndarray:
        return self.main._run_forward(x)

    def run_method(self, name: str, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        hit = self._inner.get(name)
        if hit is None:
            return self.main.run_method(name, inputs)
        backend, inner = hit
        return backend.run_method(inner, inputs)

    def segment_runner(self, name: str) -> Callable[[list], list]:
        hit = self._inner.get(name)
        if hit is None:
            return self.main.segment_runner(name)
        backend, inner = hit
        return backend.segment_runner(inner)

    def to_native(self, x: np.ndarray):
        return self.main.to_native(x)

    def to_numpy(self, y) -> np.ndarray:
        return self.main.to_numpy(y)

    def close(self) -> None:
        for b in {id(b): b for b in (self.main, *self.parts.values())}.values():
            b.close()


def open_segments(runtime: str, main: Backend, paths: dict[str, str | os.PathLike], num_threads: int | None = None,
                  **options) -> SegmentedBackend:
    """Wrap ``main`` with the segment files ``{method: path}`` (each distinct file opened once)."""
    opened: dict[str, Backend] = {}
    parts: dict[str, Backend] = {}
    try:
        for method, path in paths.items():
            key = os.fspath(path)
            if key not in opened:
                opened[key] = open_backend(runtime, key, num_threads=num_threads, **options)
            parts[method] = opened[key]
    except BaseException:
        for b in opened.values():
            b.close()
        raise
    return SegmentedBackend(main, parts)


def open_backend(runtime: str, path: str | os.PathLike, num_threads: int | None = None, **options) -> Backend:
    """Open ``path`` with the named runtime (onnx | litert | executorch | coreml).

    ``options`` go to the backend (onnx: ``providers=[...]``).
    """
    if runtime == "onnx":
        from .onnx import OnnxBackend

        return OnnxBackend(path, num_threads=num_threads, **options)
    if runtime == "litert":
        from .litert import LiteRTBackend

        return LiteRTBackend(path, num_threads=num_threads, **options)
    if runtime == "executorch":
        from .executorch import ExecuTorchBackend

        return ExecuTorchBackend(path, num_threads=num_threads, **options)
    if runtime == "coreml":
        from .coreml import CoreMLBackend

        return CoreMLBackend(path, num_threads=num_threads, **options)
    raise ValueError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")


__all__ = ["RUNTIMES", "Backend", "RuntimeUnavailableError", "SegmentedBackend", "open_backend", "open_segments"]
