"""LiteRT (TensorFlow Lite) backend: ``ai_edge_litert``, else ``tflite_runtime`` (what a Raspberry Pi has).

Quantized models: integer input tensors are fed ``round(x / scale + zero_point)`` when the caller
passes floats, and integer outputs come back dequantized, ``(q - zero_point) * scale``, using the
tensor's own (scale, zero_point). A uint8 model input without quantization parameters (the
``uint8-nhwc`` input form, normalization inside the model) is fed the uint8 pixels as they are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from pocketvit.errors import BundleError, MissingExtraError

from . import Backend


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter
    except ImportError:
        raise MissingExtraError(
            "ai-edge-litert",
            "litert",
            "needed to run .tflite models; on a Raspberry Pi `pip install tflite-runtime` works too",
        ) from None


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _quantize_in(x: np.ndarray, detail: dict) -> np.ndarray:
    want = np.dtype(detail["dtype"])
    x = np.asarray(x)
    if x.dtype == want:
        return x
    scale, zp = detail.get("quantization", (0.0, 0))
    if want.kind in "iu" and scale and np.issubdtype(x.dtype, np.floating):
        info = np.iinfo(want)
        q = np.round(x.astype(np.float32) / np.float32(scale) + zp)
        return np.clip(q, info.min, info.max).astype(want)
    return x.astype(want)


def _dequantize_out(y: np.ndarray, detail: dict) -> np.ndarray:
    y = np.array(y, copy=True)
    scale, zp = detail.get("quantization", (0.0, 0))
    if y.dtype.kind in "iu" and scale:
        return (y.astype(np.float32) - np.float32(zp)) * np.float32(scale)
    return y


class LiteRTBackend(Backend):
    runtime = "litert"

    def __init__(self, path, num_threads: int | None = None):
        super().__init__(path, num_threads)
        Interpreter = _interpreter_class()
        self.interpreter_module = Interpreter.__module__
        try:
            kwargs = {"model_path": self.path}
            if num_threads:
                kwargs["num_threads"] = int(num_threads)
            self.interp = Interpreter(**kwargs)
        except (ValueError, RuntimeError) as e:
            raise BundleError(f"{self.path}: LiteRT cannot load this model ({e})") from None
        self._sigs = self.interp.get_signature_list() or {}
        self.method_names = tuple(self._sigs)
        self._runners: dict = {}
        if self._sigs:
            for name in ("forward", "serving_default"):
                if name in self._sigs:
                    self.forward_signature = name
                    break
            else:
                self.forward_signature = next(iter(self._sigs)) if len(self._sigs) == 1 else None
            self.has_forward = self.forward_signature is not None
            if self.forward_signature is not None:
                detail = self._sig_inputs(self.forward_signature)[0][1]
                self._set_input_meta(detail)
        else:
            self.forward_signature = None
            self.interp.allocate_tensors()
            self._set_input_meta(self.interp.get_input_details()[0])
            self.method_names = ("forward",)

    def _set_input_meta(self, detail: dict) -> None:
        sig = detail.get("shape_signature", detail["shape"])
        self.input_shape = tuple(None if int(d) < 0 else int(d) for d in sig)
        self.input_dtype = np.dtype(detail["dtype"])
        self.input_quantization = tuple(detail.get("quantization", (0.0, 0)))

    # -- signatures
    def _runner(self, name: str):
        if name not in self._runners:
            self._runners[name] = self.interp.get_signature_runner(name)
        return self._runners[name]

    def _sig_inputs(self, name: str) -> list[tuple[str, dict]]:
        details = self._runner(name).get_input_details()
        return sorted(details.items(), key=lambda kv: _natural_key(kv[0]))

    def _sig_outputs(self, name: str) -> list[tuple[str, dict]]:
        details = self._runner(name).get_output_details()
        return sorted(details.items(), key=lambda kv: _natural_key(kv[0]))

    def _run_signature(self, name: str, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        ins = self._sig_inputs(name)
        if len(inputs) != len(ins):
            raise ValueError(f"{self.path}: signature {name!r} takes {len(ins)} inputs, got {len(inputs)}")
        feed = {k: np.ascontiguousarray(_quantize_in(x, d)) for (k, d), x in zip(ins, inputs)}
        out = self._runner(name)(**feed)
        return [_dequantize_out(out[k], d) for k, d in self._sig_outputs(name)]

    # -- plain tensors (models without signatures)
    def _run_tensors(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        ins = self.interp.get_input_details()
        if len(inputs) != len(ins):
            raise ValueError(f"{self.path}: the model takes {len(ins)} inputs, got {len(inputs)}")
        resized = False
        for d, x in zip(ins, inputs):
            if tuple(d["shape"]) != tuple(np.shape(x)):
                self.interp.resize_tensor_input(d["index"], list(np.shape(x)))
                resized = True
        if resized:
            self.interp.allocate_tensors()
            ins = self.interp.get_input_details()
        for d, x in zip(ins, inputs):
            self.interp.set_tensor(d["index"], np.ascontiguousarray(_quantize_in(x, d)))
        self.interp.invoke()
        return [
            _dequantize_out(self.interp.get_tensor(d["index"]), d) for d in self.interp.get_output_details()
        ]

    # -- Backend
    def _run_forward(self, x: np.ndarray) -> np.ndarray:
        if self._sigs:
            if self.forward_signature is None:
                raise BundleError(
                    f"{self.path}: the model has several signatures ({', '.join(self._sigs)}) and none "
                    "is 'forward' or 'serving_default'; call run_method(name, inputs)"
                )
            return self._run_signature(self.forward_signature, [x])[0]
        return self._run_tensors([x])[0]

    def run_method(self, name: str, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self._sigs:
            if name == "forward" and self.forward_signature is not None:
                name = self.forward_signature
            if name not in self._sigs:
                raise self._unknown_method(name)
            return self._run_signature(name, inputs)
        if name != "forward":
            raise self._unknown_method(name)
        return self._run_tensors(inputs)

    def close(self) -> None:
        self._runners.clear()
        self.interp = None
