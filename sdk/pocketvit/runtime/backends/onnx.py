"""ONNX Runtime backend (package ``onnxruntime``; ``onnxruntime-gpu`` on a Jetson / CUDA machine)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pocketvit.errors import BundleError, MissingExtraError

from ..quiet import quiet
from .base import Backend

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}

# Accelerated providers first; CPU is always last. (AzureExecutionProvider is never picked.)
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxBackend(Backend):
    runtime = "onnx"

    def __init__(self, path, num_threads: int | None = None, providers: Sequence | None = None):
        super().__init__(path, num_threads)
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingExtraError("onnxruntime", "onnx", "needed to run .onnx models") from None
        so = ort.SessionOptions()
        if num_threads:
            so.intra_op_num_threads = int(num_threads)
            so.inter_op_num_threads = 1
        so.log_severity_level = 3
        if providers is None:
            available = set(ort.get_available_providers())
            providers = [p for p in PREFERRED_PROVIDERS if p in available] or ["CPUExecutionProvider"]
        providers = list(providers)
        with quiet(self.load_log):
            try:
                self.session = ort.InferenceSession(self.path, sess_options=so, providers=providers)
            except Exception as e:  # noqa: BLE001 - onnxruntime's pybind errors share no base class
                if providers == ["CPUExecutionProvider"]:
                    raise BundleError(f"{self.path}: ONNX Runtime cannot load this model ({_first(e)})") from None
                # an accelerated provider that is compiled in but cannot start (no CUDA/TensorRT libraries): the CPU,
                # recorded as a fallback
                try:
                    self.session = ort.InferenceSession(self.path, sess_options=so, providers=["CPUExecutionProvider"])
                except Exception as e2:  # noqa: BLE001
                    raise BundleError(f"{self.path}: ONNX Runtime cannot load this model ({_first(e2)})") from None
                self.fallbacks.append(f"ONNX Runtime could not start {', '.join(providers)} ({_first(e)}); ran on "
                                      "CPUExecutionProvider")
        self.providers = self.session.get_providers()
        wanted = [p for p in providers if p != "CPUExecutionProvider"]
        dropped = [p for p in wanted if p not in self.providers]
        if dropped and not self.fallbacks:  # the session started but left a provider out
            self.fallbacks.append(f"ONNX Runtime left out {', '.join(dropped)}; runs on {', '.join(self.providers)}")
        self._inputs = self.session.get_inputs()
        self._outputs = [o.name for o in self.session.get_outputs()]
        self._first_output = self._outputs[:1]
        # (name, numpy dtype or None) per input, looked up once rather than on every call
        self._input_dtypes = [(i.name, _ORT_DTYPES.get(i.type)) for i in self._inputs]
        self._input_dtypes = [(n, None if t is None else np.dtype(t)) for n, t in self._input_dtypes]
        first = self._inputs[0]
        self.input_shape = tuple(d if isinstance(d, int) else None for d in first.shape)
        self.input_dtype = np.dtype(_ORT_DTYPES.get(first.type, np.float32))
        self.method_names = ("forward",)

    def details(self) -> dict:
        return {"providers": list(self.providers)}

    def _feed(self, inputs: Sequence[np.ndarray]) -> dict:
        if len(inputs) != len(self._input_dtypes):
            raise ValueError(
                f"{self.path}: the model takes {len(self._input_dtypes)} inputs, got {len(inputs)}"
            )
        feed = {}
        for (name, want), x in zip(self._input_dtypes, inputs):
            x = np.asarray(x)
            if want is not None and x.dtype != want:
                x = x.astype(want)
            feed[name] = x
        return feed

    def _run_forward(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(self._first_output, self._feed((x,)))[0]

    def run_method(self, name: str, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        # An ONNX file has one graph; "forward" is its only method.
        if name not in self.method_names:
            raise self._unknown_method(name)
        return list(self.session.run(self._outputs, self._feed(inputs)))

    def segment_runner(self, name: str):
        if name not in self.method_names:
            raise self._unknown_method(name)
        run, outputs, names = self.session.run, self._outputs, [n for n, _ in self._input_dtypes]

        def step(inputs: list) -> list:
            if len(inputs) != len(names):
                raise ValueError(f"{self.path}: the model takes {len(names)} inputs, got {len(inputs)}")
            return run(outputs, dict(zip(names, inputs)))

        return step

    def to_native(self, x: np.ndarray):
        return self._feed((x,))[self._input_dtypes[0][0]]

    def close(self) -> None:
        self.session = None


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__
