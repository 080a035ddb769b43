"""The runtime an app ships works in a process where `import torch` fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pocketvit

SDK = str(Path(pocketvit.__file__).resolve().parents[1])

BLOCK_TORCH = r"""
import importlib.abc, json, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
        return None

sys.meta_path.insert(0, NoTorch())
"""  # the start of a script run where `import torch` fails

SCRIPT = BLOCK_TORCH + r"""
import numpy as np
from pocketvit.errors import MissingExtraError
from pocketvit.runtime import load

rng = np.random.default_rng(0)
img = rng.integers(0, 256, (34, 40, 3), dtype=np.uint8)
out = {}
for target in ("onnx", "litert"):
    p = load(sys.argv[1], target=target, num_threads=1)
    r = p.predict(img)
    out[target] = [r.label, r.score, len(r.topk), r.latency_ms > 0]
try:
    load(sys.argv[1], target="executorch")
    out["executorch"] = "loaded?!"
except MissingExtraError as e:
    out["executorch"] = str(e)
out["torch_loaded"] = "torch" in sys.modules or any(m.startswith("torch.") for m in sys.modules)
print(json.dumps(out))
"""


def test_runtime_without_torch(tiny):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SDK, os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny["root"])],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["torch_loaded"] is False
    assert out["onnx"][0] == out["litert"][0] and out["onnx"][0].startswith("class")
    assert abs(out["onnx"][1] - out["litert"][1]) < 1e-4
    assert out["onnx"][2:] == [5, True]
    assert "'torch' is not installed" in out["executorch"] and "onnx or litert" in out["executorch"]
