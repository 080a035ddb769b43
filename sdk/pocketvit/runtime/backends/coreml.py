"""Core ML backend (package ``coremltools``). Core ML models execute only on macOS / iOS.

On any other platform opening this backend raises RuntimeUnavailableError at once: there is no
result to give, and pocketvit never fakes one.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

from pocketvit.errors import BundleError, MissingExtraError

from ..quiet import quiet
from .base import Backend, RuntimeUnavailableError


def _class_labels(spec) -> list:
    """Class labels of an ML Program classifier, in order (the constant list its `classify` op takes)."""
    for fn in spec.mlProgram.functions.values():
        for blk in fn.block_specializations.values():
            consts = {op.outputs[0].name: op.attributes["val"] for op in blk.operations if op.type == "const"}
            for op in blk.operations:
                if op.type == "classify":
                    arg = op.inputs["classes"].arguments[0]
                    val = (consts.get(arg.name) if arg.name else arg.value).immediateValue
                    items = ([s for v in val.list.values for s in v.immediateValue.tensor.strings.values]
                             if val.WhichOneof("value") == "list" else list(val.tensor.strings.values))
                    return [v.decode() if isinstance(v, bytes) else str(v) for v in items]
    raise BundleError("this Core ML classifier has no `classify` op with class labels; rebuild the bundle")


class CoreMLBackend(Backend):
    runtime = "coreml"

    def __init__(self, path, num_threads: int | None = None, compute_units: str = "ALL"):
        super().__init__(path, num_threads)
        if sys.platform != "darwin":
            raise RuntimeUnavailableError(
                f"{self.path}: Core ML models can only execute on macOS or iOS (this is {sys.platform}); "
                "on this machine use another target of the bundle (onnx, litert or executorch)"
            )
        try:
            import coremltools as ct
        except ImportError:
            raise MissingExtraError(
                "coremltools", "coreml", "needed to run Core ML models on macOS"
            ) from None
        units = getattr(ct.ComputeUnit, compute_units, None)
        if units is None:
            self.fallbacks.append(f"compute_units={compute_units!r} is not a Core ML ComputeUnit; ran with ALL")
            units = ct.ComputeUnit.ALL
        self.compute_units = units.name
        try:
            with quiet(self.load_log):
                self.model = ct.models.MLModel(self.path, compute_units=units)
        except Exception as e:  # noqa: BLE001 - coremltools raises several types for a file it cannot load
            raise BundleError(f"{self.path}: Core ML cannot load this model ({e})") from None
        spec = self.model.get_spec()
        self._inputs = [i.name for i in spec.description.input]
        self._image_inputs = {
            i.name for i in spec.description.input if i.type.WhichOneof("Type") == "imageType"
        }
        self._outputs = [o.name for o in spec.description.output]
        # a classifier (a drop-in file: ImageType in, ClassifierConfig out) returns {label: probability};
        # forward gives the probabilities in the model's class order, like any other target's scores
        self._probs = spec.description.predictedProbabilitiesName or None
        self._classes = _class_labels(spec) if self._probs else []
        shape = None
        first = spec.description.input[0].type
        if first.WhichOneof("Type") == "multiArrayType":
            shape = tuple(int(d) for d in first.multiArrayType.shape) or None
            if shape is None:
                self.fallbacks.append("the Core ML model does not state its input shape; inputs are passed as given")
        self.input_shape = shape
        self.input_dtype = np.dtype(np.float32)
        self.method_names = ("forward",)
        self._function_models: dict = {}

    def details(self) -> dict:
        return {"compute_units": self.compute_units}

    def _predict(self, model, inputs: Sequence[np.ndarray], in_names, out_names) -> list[np.ndarray]:
        if len(inputs) != len(in_names):
            raise ValueError(f"{self.path}: the model takes {len(in_names)} inputs, got {len(inputs)}")
        feed = {}
        for n, x in zip(in_names, inputs):
            x = np.asarray(x)
            if n in self._image_inputs:  # ct.ImageType input: Core ML wants a PIL image
                from PIL import Image

                img = x[0] if x.ndim == 4 else x
                feed[n] = Image.fromarray(
                    np.ascontiguousarray(img.squeeze(-1) if img.shape[-1] == 1 else img)
                )
            else:
                feed[n] = x
        out = model.predict(feed)
        return [np.asarray(out[n]) for n in out_names]

    def _run_forward(self, x: np.ndarray) -> np.ndarray:
        if self._probs:
            rows = []
            for i in range(len(x)):  # an image input takes one image per call
                d = self._predict(self.model, [x[i : i + 1]], self._inputs, [self._probs])[0].item()
                rows.append([float(d[c]) for c in self._classes])
            return np.asarray(rows, dtype=np.float32)
        return self._predict(self.model, [x], self._inputs, self._outputs[:1])[0]

    def run_method(self, name: str, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if name in ("forward", "main"):
            return self._predict(self.model, inputs, self._inputs, self._outputs)
        # A multifunction .mlpackage: one function per early-exit segment.
        if name not in self._function_models:
            import coremltools as ct

            try:
                self._function_models[name] = ct.models.MLModel(self.path, function_name=name)
            except Exception as e:
                raise BundleError(f"{self.path}: Core ML model has no function {name!r} ({e})") from None
        m = self._function_models[name]
        spec = m.get_spec()
        return self._predict(
            m, inputs, [i.name for i in spec.description.input], [o.name for o in spec.description.output]
        )

    def close(self) -> None:
        self.model = None
        self._function_models.clear()
