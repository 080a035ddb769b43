"""Helpers for the verify/bench/inspect/device tests: the tiny build with every Linux target, and a
way to swap a bundle's model for a genuinely different one (checksums updated)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, TINY

EXPORT_TARGETS = ["executorch", "onnx", "litert"]
# what the bundle then holds: the export targets and the default LiteRT drop-in file (export/dropin.py)
ALL_TARGETS = [*EXPORT_TARGETS, "litert-dropin"]
_BUILT: dict[str, Path] = {}


def all_targets_build(tiny_build: Path, tmp_path_factory) -> Path:
    """The session's tiny build, copied and rebuilt with onnx and litert added (only those stages run:
    teacher, cache, distill and the ExecuTorch export are reused). Built once per session."""
    key = str(tiny_build)
    if key not in _BUILT:
        out = tmp_path_factory.mktemp("tiny-all-targets") / "build"
        shutil.copytree(tiny_build, out)
        r = subprocess.run(
            [sys.executable, "-m", "pocketvit.cli.main", "build", str(TINY), "--out", str(out),
             "--set", f"export.targets=[{', '.join(EXPORT_TARGETS)}]"],
            check=False, capture_output=True, text=True, cwd=ROOT, timeout=900,
        )
        assert r.returncode == 0, r.stderr[-4000:]
        _BUILT[key] = out
    return _BUILT[key]


def copy_bundle(build: Path, dst: Path) -> Path:
    shutil.copytree(build / "bundle", dst)
    return dst


def update_entry(bundle: Path, target: str) -> None:
    """Rewrite manifest.json's sha256 and bytes for ``target`` from the file now in place."""
    from pocketvit.runtime import sha256_file

    mpath = bundle / "manifest.json"
    m = json.loads(mpath.read_text())
    e = m["files"][target]
    f = bundle / e["path"]
    e["sha256"] = sha256_file(f)
    e["bytes"] = f.stat().st_size
    mpath.write_text(json.dumps(m, indent=2))


def perturb_onnx_weights(bundle: Path, target: str = "onnx", scale: float = 0.5, seed: int = 0) -> None:
    """Replace the ONNX model with one whose float weights differ (noise of ``scale`` x each tensor's
    std), and record its new sha256 in the manifest: a valid bundle with a mismatching model."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    path = bundle / json.loads((bundle / "manifest.json").read_text())["files"][target]["path"]
    model = onnx.load(str(path))
    rng = np.random.default_rng(seed)
    changed = 0
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32 and w.size >= 16:
            noise = rng.standard_normal(w.shape).astype(np.float32) * (float(w.std()) * scale + 1e-3)
            init.CopyFrom(numpy_helper.from_array(w + noise, init.name))
            changed += 1
    assert changed, "no float weights found to perturb"
    onnx.save(model, str(path))
    update_entry(bundle, target)
