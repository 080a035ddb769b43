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

from pocketvit.runtime.backends.base import Backend, RuntimeUnavailableError, SegmentedBackend
from pocketvit.runtime.targets import RUNTIMES


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
