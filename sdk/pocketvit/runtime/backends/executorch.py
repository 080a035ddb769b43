"""ExecuTorch backend (package ``executorch``): ``executorch.runtime.Runtime``.

The ExecuTorch *Python* runtime takes and returns torch tensors (it refuses numpy arrays), and
the ``executorch`` package imports torch itself, so this backend is the one place in
pocketvit.runtime where torch gets imported (lazily, only when this backend is opened). Apps that
must stay torch-free in Python use the onnx or litert backends; on Android / iOS the ExecuTorch
C++/Kotlin/Swift runtimes load the same .pte without torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import numpy as np

from pocketvit.errors import BundleError, MissingExtraError

from ..quiet import quiet
from .base import Backend

# c10::ScalarType codes -> numpy
_SCALAR_TYPES = {
    0: np.uint8,
    1: np.int8,
    2: np.int16,
    3: np.int32,
    4: np.int64,
    5: np.float16,
    6: np.float32,
    7: np.float64,
}


class ExecuTorchBackend(Backend):
    runtime = "executorch"

    def __init__(self, path, num_threads: int | None = None):
        super().__init__(path, num_threads)
        self.threadpool: str | None = None
        with quiet(self.load_log):  # torch's import-time deprecation log, cpuinfo lines from the thread pool
            self._load(num_threads)

    def _load(self, num_threads: int | None) -> None:
        try:
            self._torch = importlib.import_module("torch")
        except ImportError:
            raise MissingExtraError(
                "torch",
                "executorch",
                "the ExecuTorch Python runtime takes and returns torch tensors; "
                "for a torch-free Python app use the bundle's onnx or litert target",
            ) from None
        try:
            et_runtime = importlib.import_module("executorch.runtime")
        except ImportError as e:
            raise MissingExtraError("executorch", "executorch", f"needed to run .pte models ({e})") from None
        if num_threads:
            self._set_threads(int(num_threads))
        try:
            self.program = et_runtime.Runtime.get().load_program(self.path)
        except Exception as e:  # noqa: BLE001 - the pybind loader raises RuntimeError or ValueError
            raise BundleError(f"{self.path}: ExecuTorch cannot load this program ({e})") from None
        self.method_names = tuple(sorted(self.program.method_names))
        self._methods: dict = {}
        self.forward_method = (
            "forward"
            if "forward" in self.method_names
            else (self.method_names[0] if len(self.method_names) == 1 else None)
        )
        self.has_forward = self.forward_method is not None
        if self.forward_method is not None:
            meta = self._method(self.forward_method)[0].metadata
            ti = meta.input_tensor_meta(0)
            self.input_shape = tuple(int(d) for d in ti.sizes())
            self.input_dtype = np.dtype(_SCALAR_TYPES.get(int(ti.dtype()), np.float32))

    def _set_threads(self, n: int) -> None:
        """ExecuTorch's thread pool is process-wide and set through a private hook of its pybindings; when that hook
        is missing (another executorch build) the runtime keeps its own default, and that is recorded."""
        try:
            portable = importlib.import_module("executorch.extension.pybindings.portable_lib")
            portable._unsafe_reset_threadpool(n)
            self.threadpool = f"reset to {n} thread(s)"
        except (ImportError, AttributeError) as e:
            self.threadpool = "the runtime's default"
            self.fallbacks.append(f"ExecuTorch's thread pool could not be set to {n} thread(s) ({type(e).__name__}: "
                                  f"{e}); it ran with the runtime's default thread count")

    def details(self) -> dict:
        return {"threadpool": self.threadpool or "the runtime's default"}

    def _method(self, name: str):
        """(method handle, numpy dtype of each input or None), loaded once per name."""
        if name not in self._methods:
            if name not in self.method_names:
                raise self._unknown_method(name)
            before = len(self.load_log)
            try:
                with quiet(self.load_log):  # the first method load starts the thread pool (cpuinfo lines)
                    method = self.program.load_method(name)
            except Exception as e:  # noqa: BLE001 - the pybind loader raises RuntimeError or ValueError
                # the runtime's own first "failed" line says why ("Failed to create StaticConstantPad node ...")
                why = next((line.strip() for line in self.load_log[before:] if "fail" in line.lower()), "")
                raise BundleError(f"{self.path}: ExecuTorch cannot load method {name!r} ({e})"
                                  + (f": {why}" if why else "")) from None
            meta = method.metadata
            wants = []
            for i in range(meta.num_inputs()):
                try:
                    want = _SCALAR_TYPES.get(int(meta.input_tensor_meta(i).dtype()))
                except Exception:  # noqa: BLE001 - a non-tensor input (the pybind error type varies)
                    want = None
                wants.append(None if want is None else np.dtype(want))
            self._methods[name] = (method, tuple(wants))
        return self._methods[name]

    def _execute(self, name: str, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        method, wants = self._method(name)
        if len(inputs) != len(wants):
            raise ValueError(f"{self.path}: method {name!r} takes {len(wants)} inputs, got {len(inputs)}")
        from_numpy = self._torch.from_numpy
        tensors = []
        for want, x in zip(wants, inputs):
            x = np.asarray(x)
            if want is not None and x.dtype != want:
                x = x.astype(want)
            tensors.append(from_numpy(np.ascontiguousarray(x)))
        try:
            outs = method.execute(tensors)
        except RuntimeError as e:  # a delegate that fails at run time ("method->execute() failed with error 0x1")
            raise BundleError(f"{self.path}: ExecuTorch failed running method {name!r} ({e})"
                              + self._execute_reason(method, tensors)) from None
        # Outputs can alias the method's planned memory: copy before the next call reuses it.
        return [o.detach().cpu().numpy().copy() if hasattr(o, "numpy") else np.asarray(o) for o in outs]

    def _execute_reason(self, method, tensors) -> str:
        """The runtime's own words for a failed run: the same call again with its log captured (a failure is
        deterministic, and capturing every call would add to the timed path). ": Attempted to resize a static
        tensor. Expected shape (1, 128, 8, 8), but received (1, 8, 8, 128)", or ""."""
        log: list[str] = []
        try:
            with quiet(log):
                method.execute(tensors)
        except RuntimeError:
            pass
        lines = [line.split("] ", 1)[-1].strip().rstrip(".") for line in log
                 if any(w in line.lower() for w in ("fail", "attempt", "error", "expected"))]
        return f": {'; '.join(lines[:2])}" if lines else ""

    def _run_forward(self, x: np.ndarray) -> np.ndarray:
        if self.forward_method is None:
            raise BundleError(
                f"{self.path}: the program has several methods ({', '.join(self.method_names)}) and none "
                "is 'forward'; call run_method(name, inputs)"
            )
        return self._execute(self.forward_method, [x])[0]

    def run_method(self, name: str, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if name == "forward" and self.forward_method is not None:
            name = self.forward_method
        return self._execute(name, inputs)

    # -- exit chains: torch tensors from segment to segment (ExecuTorch's Python runtime speaks torch)
    outputs_alias = True  # outputs live in the method's planned memory until its next call

    def segment_runner(self, name: str):
        if name == "forward" and self.forward_method is not None:
            name = self.forward_method
        method, wants = self._method(name)
        execute = method.execute

        def run(inputs: list) -> list:
            if len(inputs) != len(wants):
                raise ValueError(f"{self.path}: method {name!r} takes {len(wants)} inputs, got {len(inputs)}")
            return execute(inputs)

        return run

    def to_native(self, x: np.ndarray):
        if self.input_dtype is not None and x.dtype != self.input_dtype:
            x = x.astype(self.input_dtype)
        return self._torch.from_numpy(np.ascontiguousarray(x))

    def to_numpy(self, y) -> np.ndarray:
        return y.numpy() if hasattr(y, "numpy") else np.asarray(y)

    def close(self) -> None:
        self._methods.clear()
        self.program = None
