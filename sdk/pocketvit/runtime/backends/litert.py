"""LiteRT (TensorFlow Lite) backend: ``ai_edge_litert``, else ``tflite_runtime`` (what a Raspberry Pi has).

Quantized models: integer input tensors are fed ``round(x / scale + zero_point)`` when the caller
passes floats, and integer outputs come back dequantized, ``(q - zero_point) * scale``, using the
tensor's own (scale, zero_point). A uint8 model input without quantization parameters (the
``uint8-nhwc`` input form, normalization inside the model) is fed the uint8 pixels as they are.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence

import numpy as np

from pocketvit.errors import BundleError, MissingExtraError

from ..quiet import quiet, warnings_in
from .base import Backend

_DELEGATE = re.compile(r"Created TensorFlow Lite (\w+) delegate")


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
        self._quieted: set = set()
        # the delegate line (`INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`) is printed when tensors are
        # first allocated: captured with the rest of loading, and read back into details() and fallbacks
        with quiet(self.load_log):
            self._load(Interpreter, num_threads)
        self.fallbacks += [f"LiteRT: {line}" for line in warnings_in(self.load_log)]

    def _quiet_once(self, key: tuple):
        """quiet() the first time a runner is made or a shape allocated (where LiteRT prints), not on every call."""
        if key in self._quieted:
            return contextlib.nullcontext()
        self._quieted.add(key)
        return quiet(self.load_log)

    def details(self) -> dict:
        delegates = sorted({m.group(1) for m in map(_DELEGATE.search, self.load_log) if m})
        return {"interpreter": self.interpreter_module.split(".")[0], "delegates": delegates}

    def _load(self, Interpreter, num_threads: int | None) -> None:
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
        self._details: dict = {}
        self._direct_shape: tuple | None = None
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
        self._direct = self._direct_forward()

    def _direct_forward(self) -> tuple | None:
        """(input index, input detail, input dtype, output index, output detail) of a
        one-input forward that lives in the interpreter's primary subgraph, so that run() can go
        straight through set_tensor / invoke / get_tensor with indices looked up once, rather than
        a signature runner that resizes and re-allocates the tensors on every call; None otherwise
        (several inputs, or a signature in another subgraph: the signature runner)."""
        try:
            if self._sigs:
                if self.forward_signature is None:
                    return None
                # set_tensor / invoke / get_tensor act on the primary subgraph (index 0): the forward
                # signature must be that one (tensor indices alone do not say: they are per subgraph)
                sg = getattr(self._runner(self.forward_signature), "_subgraph_index", None)
                if sg != 0 and not (sg is None and len(self._sigs) == 1):
                    return None
                ins = self._sig_inputs(self.forward_signature)
                outs = self._sig_outputs(self.forward_signature)
                self._runners.clear()  # see _run_forward
                self.interp.allocate_tensors()
                if {d["index"] for _, d in ins} != {d["index"] for d in self.interp.get_input_details()}:
                    return None
                if {d["index"] for _, d in outs} != {d["index"] for d in self.interp.get_output_details()}:
                    return None
                ins, outs = [d for _, d in ins], [d for _, d in outs]
            else:
                ins, outs = self.interp.get_input_details(), self.interp.get_output_details()
            if len(ins) != 1 or not outs:
                return None
            din, dout = ins[0], outs[0]
            self._direct_shape = tuple(int(v) for v in din["shape"])
            return din["index"], din, np.dtype(din["dtype"]), dout["index"], dout
        except (ValueError, RuntimeError, KeyError, AttributeError):
            return None

    def _set_input_meta(self, detail: dict) -> None:
        sig = detail.get("shape_signature", detail["shape"])
        self.input_shape = tuple(None if int(d) < 0 else int(d) for d in sig)
        self.input_dtype = np.dtype(detail["dtype"])
        self.input_quantization = tuple(detail.get("quantization", (0.0, 0)))

    # -- signatures (runners and their sorted input/output details looked up once per name)
    def _runner(self, name: str):
        if name not in self._runners:
            with self._quiet_once(("runner", name)):  # a signature's first runner allocates its subgraph
                self._runners[name] = self.interp.get_signature_runner(name)
        return self._runners[name]

    def _sig_inputs(self, name: str) -> list[tuple[str, dict]]:
        key = ("in", name)
        if key not in self._details:
            details = self._runner(name).get_input_details()
            self._details[key] = sorted(details.items(), key=lambda kv: _natural_key(kv[0]))
        return self._details[key]

    def _sig_outputs(self, name: str) -> list[tuple[str, dict]]:
        key = ("out", name)
        if key not in self._details:
            details = self._runner(name).get_output_details()
            self._details[key] = sorted(details.items(), key=lambda kv: _natural_key(kv[0]))
        return self._details[key]

    def _run_signature(self, name: str, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        ins = self._sig_inputs(name)
        if len(inputs) != len(ins):
            raise ValueError(f"{self.path}: signature {name!r} takes {len(ins)} inputs, got {len(inputs)}")
        feed = {k: np.ascontiguousarray(_quantize_in(x, d)) for (k, d), x in zip(ins, inputs)}
        self._direct_shape = None  # the runner resizes its subgraph's inputs to these arrays
        out = self._runner(name)(**feed)
        return [_dequantize_out(out[k], d) for k, d in self._sig_outputs(name)]

    # -- plain tensors (models without signatures)
    def _run_tensors(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        ins = self.interp.get_input_details()
        if len(inputs) != len(ins):
            raise ValueError(f"{self.path}: the model takes {len(ins)} inputs, got {len(inputs)}")
        resized = False
        self._direct_shape = None
        for d, x in zip(ins, inputs):
            if tuple(d["shape"]) != tuple(np.shape(x)):
                self.interp.resize_tensor_input(d["index"], list(np.shape(x)))
                resized = True
        if resized:
            with self._quiet_once(("allocate", tuple(np.shape(inputs[0])))):
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
        direct = self._direct
        if direct is not None:
            in_index, din, in_dtype, out_index, dout = direct
            interp = self.interp
            if self._runners:
                # a live SignatureRunner holds a reference to the interpreter's internals, and
                # while one does, the Interpreter refuses invoke() and allocate_tensors()
                self._runners.clear()
            if x.shape != self._direct_shape:
                # what the signature runner does on every call, here only when the shape changes
                interp.resize_tensor_input(in_index, list(x.shape))
                with self._quiet_once(("allocate", x.shape)):
                    interp.allocate_tensors()
                self._direct_shape = x.shape
            if x.dtype != in_dtype:
                x = np.ascontiguousarray(_quantize_in(x, din))
            interp.set_tensor(in_index, x)
            interp.invoke()
            y = interp.get_tensor(out_index)  # a copy, not a view of the interpreter's buffer
            return _dequantize_out(y, dout) if y.dtype.kind in "iu" else y
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

    def segment_runner(self, name: str):
        if not self._sigs:
            return super().segment_runner(name)
        if name == "forward" and self.forward_signature is not None:
            name = self.forward_signature
        if name not in self._sigs:
            raise self._unknown_method(name)
        ins, outs = self._sig_inputs(name), self._sig_outputs(name)
        if any(np.dtype(d["dtype"]).kind in "iu" for _, d in (*ins, *outs)):
            return super().segment_runner(name)  # integer ends: run_method (de)quantizes
        in_keys, out_keys, runners = [k for k, _ in ins], [k for k, _ in outs], self._runners

        def step(inputs: list) -> list:
            if len(inputs) != len(in_keys):
                raise ValueError(f"{self.path}: signature {name!r} takes {len(in_keys)} inputs, got {len(inputs)}")
            out = (runners.get(name) or self._runner(name))(**dict(zip(in_keys, inputs)))
            return [out[k] for k in out_keys]

        return step

    def close(self) -> None:
        self._runners.clear()
        self._details.clear()
        self._direct = None
        self.interp = None
