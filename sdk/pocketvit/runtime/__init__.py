"""pocketvit.runtime: load a bundle and predict on the device, without torch.

    from pocketvit.runtime import load
    p = load("runs/fashion-mnist/bundle", target="litert")   # or "onnx", "executorch", "coreml"
    r = p.predict(frame)            # HxWxC uint8 (BGR from OpenCV by default), HxW gray, or a path
    r.label, r.score, r.topk, r.exit, r.latency_ms

Only numpy is required; each backend imports its runtime lazily (onnxruntime, ai_edge_litert or
tflite_runtime, executorch, coremltools). No module here imports torch; the ExecuTorch backend
gets it through the executorch package, which needs it.
"""

from .backends import Backend, RuntimeUnavailableError, open_backend
from .bundle import Bundle, extract_zip
from .images import read_image
from .io import atomic_write_bytes, sha256_file
from .manifest import FORMAT_VERSION, file_entry, validate_manifest, write_manifest
from .predictor import Prediction, Predictor, choose_target, l2_normalize, load, softmax
from .preprocessing import prepare_image, preprocess, preprocess_array, preprocess_batch
from .targets import TARGETS

__all__ = [
    "FORMAT_VERSION",
    "TARGETS",
    "Backend",
    "Bundle",
    "Prediction",
    "Predictor",
    "RuntimeUnavailableError",
    "atomic_write_bytes",
    "choose_target",
    "extract_zip",
    "file_entry",
    "l2_normalize",
    "load",
    "open_backend",
    "prepare_image",
    "preprocess",
    "preprocess_array",
    "preprocess_batch",
    "read_image",
    "sha256_file",
    "softmax",
    "validate_manifest",
    "write_manifest",
]
