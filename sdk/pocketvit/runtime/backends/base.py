"""The backend interface every runtime implements, and the wrapper that adds early-exit segment files."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from pocketvit.errors import PocketVitError


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
        # what the runtime printed while loading (captured, see runtime/quiet.py), and every fallback taken instead of
        # what was asked (a provider, a thread count, a delegate): recorded, never silent
        self.load_log: list[str] = []
        self.fallbacks: list[str] = []

    def describe(self) -> dict:
        """How the file runs here: runtime, threads asked for, runtime-specific facts (provider, delegate, thread
        pool) and the fallbacks taken. report.json, bench JSON and the model card record it."""
        return {"runtime": self.runtime, "threads": self.num_threads, **self.details(),
                "fallbacks": list(self.fallbacks)}

    def details(self) -> dict:
        return {}

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
        self.load_log = [line for b in (main, *parts.values()) for line in b.load_log]
        self.fallbacks = list(dict.fromkeys(f for b in (main, *parts.values()) for f in b.fallbacks))
        self.input_shape, self.input_dtype = main.input_shape, main.input_dtype
        self.has_forward = main.has_forward
        self.outputs_alias = main.outputs_alias or any(b.outputs_alias for b in parts.values())
        self.method_names = tuple(dict.fromkeys((*main.method_names, *parts)))
        self._inner = {m: (b, m if m in b.method_names else "forward") for m, b in parts.items()}

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.main.run(x)

    def details(self) -> dict:
        return self.main.details()

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
