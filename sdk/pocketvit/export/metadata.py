"""Model-file metadata that ecosystem apps read: TFLite metadata (MediaPipe Tasks, TFLite Task Library) and
ONNX ``metadata_props``.

TFLite metadata is written by tflite-support 0.4.4, which cannot live in pocketvit's environment (it pins
protobuf<4 and needs Debian's libusb-1.0-0). `make tools-venv` creates .venv-tools for it; this module runs
pocketvit/tools/tflite_metadata.py with that interpreter (or the one POCKETVIT_TFLITE_TOOLS_PYTHON names).
Without it the drop-in file is written anyway, without metadata: MediaPipe still runs it (uint8 input) but
returns no category names, and the export says how to get them.

ONNX metadata is written with the onnx package (already a pocketvit dependency of the onnx target):
``labels`` (JSON list), ``preprocessing`` (the manifest's input contract, JSON), ``input_form``, ``outputs``,
``name``, ``description``, ``version``, ``license``, plus the model's ``doc_string``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from pocketvit.export._common import atomic_path, require

TOOLS_ENV = "POCKETVIT_TFLITE_TOOLS_PYTHON"
TOOL_SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "tflite_metadata.py"
REPO_TOOLS_VENV = Path(__file__).resolve().parents[3] / ".venv-tools"
MISSING_TOOLS = ("TFLite metadata not written: the tflite-support tool environment is missing (run `make tools-venv`, "
                 f"or set {TOOLS_ENV} to a Python with tflite-support 0.4.4 and protobuf<4); the drop-in file works "
                 "without it, but MediaPipe shows no label names")


def tools_python() -> Path | None:
    """The interpreter that has tflite-support: $POCKETVIT_TFLITE_TOOLS_PYTHON, else the repo's .venv-tools."""
    env = os.environ.get(TOOLS_ENV)
    if env:
        return Path(env) if Path(env).is_file() else None
    for cand in (REPO_TOOLS_VENV / "bin" / "python", REPO_TOOLS_VENV / "Scripts" / "python.exe"):
        if cand.is_file():
            return cand
    return None


def tflite_metadata_spec(spec: dict[str, Any], labels: list[str], *, name: str, description: str | None,
                         version: str | None, license: str | None, input_form: str, task: str) -> dict[str, Any]:
    """What tools/tflite_metadata.py writes. The drop-in graph normalizes inside and takes 0..255 pixels, so the
    metadata's normalization is the identity (mean 0, std 1): MediaPipe feeds float models (x - mean) / std."""
    from pocketvit import __version__

    gray = spec["channels"] == 1
    dtype = "uint8" if input_form == "uint8-nhwc" else "float32 (0..255)"
    return {
        "name": name,
        "description": description or f"{name}: {task} model exported by pocketvit",
        "version": version or f"pocketvit {__version__}",
        "author": "pocketvit",
        "license": license or "see the bundle's README.md",
        "labels": list(labels),
        "norm_mean": [0.0],
        "norm_std": [1.0],
        "color_space": "RGB",  # the drop-in graph takes RGB even for a gray model (MediaPipe feeds only RGB)
        "task": task,
        "input_description": (f"{spec['height']}x{spec['width']} RGB pixels, NHWC {dtype}"
                              f"{' (converted to gray inside with PIL luma)' if gray else ''}; "
                              f"resize {spec.get('resize')} and centre crop {spec.get('crop')} are the app's job; the "
                              f"model scales by {spec.get('scale', 1 / 255):.6g}, subtracts mean {spec.get('mean')}, "
                              f"divides by std {spec.get('std')}"),
        "output_description": "class probabilities (softmax)" if task == "classify" else "image embedding"
        + (" (L2-normalised; its cosine with the rows of the bundle's text_embeddings.npy ranks the classes)"
           if task == "zero-shot" else ""),
    }


def write_tflite_metadata(path: Path | str, *, spec: dict[str, Any], labels: list[str], name: str,
                          description: str | None = None, version: str | None = None, license: str | None = None,
                          input_form: str = "uint8-nhwc", task: str = "classify") -> dict[str, Any]:
    """Embed TFLite metadata into `path` in place (atomically). Returns {written: bool, ...}; never raises for a
    missing tool environment (the file stays valid without metadata) but does for a tool that fails."""
    from pocketvit.errors import ExportError
    from pocketvit.progress import log

    py = tools_python()
    if py is None:
        log(f"warning: {MISSING_TOOLS}")
        return {"written": False, "reason": MISSING_TOOLS}
    md = tflite_metadata_spec(spec, labels, name=name, description=description, version=version,
                              license=license, input_form=input_form, task=task)
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        spec_file = Path(tmp) / "spec.json"
        spec_file.write_text(json.dumps(md), encoding="utf-8")
        with atomic_path(path) as out:
            proc = subprocess.run([str(py), str(TOOL_SCRIPT), "write", str(path), str(out), str(spec_file)],
                                  capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""}, check=False)
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                raise ExportError(f"{path}: writing TFLite metadata with {py} failed: {' | '.join(tail)}. Recreate "
                                  "the tool environment (rm -rf .venv-tools; make tools-venv) or export with "
                                  "--no-dropin-metadata.")
    return {"written": True, "tool": "tflite-support 0.4.4", "labels": len(labels),
            "color_space": md["color_space"], "norm_mean": md["norm_mean"], "norm_std": md["norm_std"]}


def read_tflite_metadata(path: Path | str) -> dict[str, Any]:
    """The metadata as tflite-support reads it back (needs the tool environment)."""
    from pocketvit.errors import MissingExtraError

    py = tools_python()
    if py is None:
        raise MissingExtraError("tflite_support", "tools-venv", MISSING_TOOLS)
    proc = subprocess.run([str(py), str(TOOL_SCRIPT), "read", str(path)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ""}, check=False)
    if proc.returncode != 0:
        from pocketvit.errors import BundleError

        raise BundleError(f"{path}: cannot read TFLite metadata: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout)


def tflite_labels(path: Path | str) -> list[str] | None:
    """Labels packed into a .tflite with metadata (the file is then also a zip), torch- and tool-free."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith(".txt")]
            return z.read(names[0]).decode("utf-8").splitlines() if names else None
    except (zipfile.BadZipFile, OSError):
        return None


# --------------------------------------------------------------------------- ONNX


def onnx_metadata(spec: dict[str, Any], labels: list[str], *, name: str, description: str | None = None,
                  version: str | None = None, license: str | None = None, input_form: str = "float-nchw",
                  outputs: str = "logits") -> dict[str, str]:
    """metadata_props of a bundle's .onnx: labels and the whole preprocessing contract."""
    from pocketvit import __version__

    return {
        "name": name,
        "description": description or f"{name}, exported by pocketvit",
        "version": version or f"pocketvit {__version__}",
        "license": license or "see the bundle's README.md",
        "labels": json.dumps(list(labels)),
        "preprocessing": json.dumps(spec, sort_keys=True),
        "input_form": input_form,
        "outputs": outputs,
    }


def write_onnx_metadata(path: Path | str, *, spec: dict[str, Any], labels: list[str], name: str,
                        description: str | None = None, version: str | None = None, license: str | None = None,
                        input_form: str = "float-nchw", outputs: str = "logits") -> dict[str, Any]:
    """Set metadata_props (replacing earlier pocketvit keys) and doc_string of `path`, in place, atomically."""
    onnx = require("onnx", "onnx", "needed to write ONNX metadata")
    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    props = onnx_metadata(spec, labels, name=name, description=description, version=version, license=license,
                          input_form=input_form, outputs=outputs)
    keep = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    for p in keep:
        model.metadata_props.add(key=p.key, value=p.value)
    for k, v in props.items():
        model.metadata_props.add(key=str(k), value=str(v))
    model.doc_string = props["description"]
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return {"written": True, "keys": sorted(props)}


def read_onnx_metadata(path: Path | str) -> dict[str, str]:
    """metadata_props of an .onnx as a dict (with onnxruntime if onnx is not installed: the device case)."""
    try:
        import onnx

        m = onnx.load(str(path), load_external_data=False)
        return {p.key: p.value for p in m.metadata_props}
    except ImportError:
        import onnxruntime as ort

        return dict(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                    .get_modelmeta().custom_metadata_map)


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(read_tflite_metadata(sys.argv[1]), indent=2))
