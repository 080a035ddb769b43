"""Model-file metadata that ecosystem apps read: TFLite metadata (MediaPipe Tasks, TFLite Task Library) and
ONNX ``metadata_props``.

TFLite metadata is written in pocketvit's own environment (export/tflite_metadata.py: the flatbuffers runtime and
ai-edge-litert's TFLite schema bindings), so a drop-in file carries its labels, normalization, name and licence by
default. tflite-support 0.4.4 (which pins protobuf<4, so it lives in its own venv: `make tools-venv`) is only a
second reader that tests use to cross-check the files when that venv exists (`read_with_tflite_support`).

ONNX metadata is written with the onnx package (already a pocketvit dependency of the onnx target):
``labels`` (JSON list), ``preprocessing`` (the manifest's input contract, JSON), ``input_form``, ``outputs``,
``name``, ``description``, ``version``, ``license``, plus the model's ``doc_string``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from pocketvit.export._common import atomic_path, require

TOOLS_ENV = "POCKETVIT_TFLITE_TOOLS_PYTHON"
TOOL_SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "tflite_metadata.py"
REPO_TOOLS_VENV = Path(__file__).resolve().parents[3] / ".venv-tools"
MISSING_TOOLS = (f"no tflite-support tool environment (`make tools-venv`, or {TOOLS_ENV}): it is only needed to "
                 "cross-check TFLite metadata with tflite-support's own reader")
WRITER = "pocketvit (flatbuffers + ai-edge-litert's TFLite schema)"


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
    """Embed TFLite metadata into `path` in place (atomically): image input (RGB, the identity normalization: the
    drop-in graph normalizes inside), class labels (classify) or an embedding output. Returns {written: True, ...}."""
    from pocketvit.export.tflite_metadata import image_metadata, populate

    md = tflite_metadata_spec(spec, labels, name=name, description=description, version=version,
                              license=license, input_form=input_form, task=task)
    data, files = image_metadata(
        name=md["name"], description=md["description"], version=md["version"], author=md["author"],
        license=md["license"], labels=md["labels"], norm_mean=md["norm_mean"], norm_std=md["norm_std"],
        color_space=md["color_space"], input_description=md["input_description"],
        output_description=md["output_description"], uint8_input=input_form == "uint8-nhwc", task=task)
    path = Path(path)
    out = populate(path.read_bytes(), data, files)
    with atomic_path(path) as tmp:
        tmp.write_bytes(out)
    return {"written": True, "writer": WRITER, "labels": len(labels) if task == "classify" else 0,
            "color_space": md["color_space"], "norm_mean": md["norm_mean"], "norm_std": md["norm_std"]}


def read_tflite_metadata(path: Path | str) -> dict[str, Any]:
    """{metadata, associated_files, labels} of a .tflite (the metadata as tflite-support's displayer shows it);
    BundleError when the file carries none."""
    from pocketvit.errors import BundleError
    from pocketvit.export.tflite_metadata import read

    md = read(Path(path).read_bytes())
    if md is None:
        raise BundleError(f"{path}: the file carries no TFLite metadata")
    return md


def read_with_tflite_support(path: Path | str) -> dict[str, Any]:
    """The same, read by tflite-support itself in the tool environment (a second, independent reader for tests)."""
    from pocketvit.errors import BundleError, MissingExtraError

    py = tools_python()
    if py is None:
        raise MissingExtraError("tflite_support", "tools-venv", MISSING_TOOLS)
    proc = subprocess.run([str(py), str(TOOL_SCRIPT), "read", str(path)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ""}, check=False)
    if proc.returncode != 0:
        raise BundleError(f"{path}: tflite-support cannot read its TFLite metadata: "
                          f"{proc.stderr.strip().splitlines()[-1:]}")
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
