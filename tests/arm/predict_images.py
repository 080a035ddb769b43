"""A bundle's targets on a stack of images through pocketvit.runtime alone (no torch, no pytest): run on this machine
and inside the emulated Raspberry Pi, the two results are compared by tests/arm/test_arm.py.

    python predict_images.py BUNDLE IMAGES.npy OUT.npz TARGET [TARGET...]

IMAGES.npy: N x H x W uint8 (gray) or N x H x W x 3 (RGB). OUT.npz: per target the class probabilities
(``scores:<target>``), and ``meta`` (JSON): the machine, numpy's version, whether torch is importable, and the module
that ran each target.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import sys

import numpy as np
from pocketvit.runtime import load


def main(bundle: str, images_path: str, out: str, targets: list[str]) -> None:
    images = np.load(images_path)
    color = "GRAY" if images.ndim == 3 else "RGB"
    arrays = {}
    meta = {"machine": platform.machine(), "python": platform.python_version(), "numpy": np.__version__,
            "torch_importable": importlib.util.find_spec("torch") is not None, "modules": {}}
    for t in targets:
        p = load(bundle, target=t, num_threads=1)
        arrays[f"scores:{t}"] = np.stack([p.predict(im, input_color=color).scores for im in images]).astype(np.float32)
        runtime = p.bundle.runtime_of(t)
        meta["modules"][t] = (getattr(getattr(p.backend, "main", p.backend), "interpreter_module", None)
                              or {"onnx": "onnxruntime", "executorch": "executorch.runtime"}.get(runtime, runtime))
        p.close()
    meta["torch_imported"] = "torch" in sys.modules
    np.savez(out, meta=np.array(json.dumps(meta)), **arrays)


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
