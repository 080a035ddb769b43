"""Write a bundle from exported files.

    from pocketvit.export.bundle import write_bundle_dir
    write_bundle_dir(out, name=..., files=[ExportedFile, ...], labels=..., input_spec=..., source=...,
                     reference_weights=Path("weights.safetensors"))

`write_bundle_dir` is what both `pocketvit build` (report.write_bundle) and `pocketvit export` use:
model files are copied (or moved) in under temporary names and renamed into place, the reference
weights go to reference/weights.safetensors, the manifest (sha256 of every file) is written last and
atomically, the README.md model card beside it; files a previous manifest listed that the new one does
not are removed.

Importing this module is instant: torch and the toolchains are imported inside the functions.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pocketvit.errors import BundleError, ExportError, MissingExtraError, OutputError
from pocketvit.export._common import ExportedFile
from pocketvit.progress import log

REFERENCE_WEIGHTS = "reference/weights.safetensors"
CARD = "README.md"
MANIFEST = "manifest.json"


# --------------------------------------------------------------------------- writing a bundle


def bundle_file_name(target: str, src: Path) -> str:
    """model.pte for 'executorch', model-int8.pte for 'executorch-int8' (every target gets its own name)."""
    src = Path(src)
    if "-" not in target:
        return src.name
    suffix = target.split("-", 1)[1]
    return src.name if src.stem.endswith(f"-{suffix}") else f"{src.stem}-{suffix}{src.suffix}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def place(src: Path, dst: Path, move: bool = False) -> None:
    """Copy (or move) a file or an .mlpackage folder to dst through a temporary name, then rename it in."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        if move:
            shutil.move(str(src), str(tmp))
        elif src.is_dir():
            shutil.copytree(src, tmp)
        else:
            shutil.copy2(src, tmp)
        if dst.is_dir() and not dst.is_symlink():
            old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(dst, old)
            os.replace(tmp, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if tmp.is_dir() and dst.exists():
                dst.unlink()
            os.replace(tmp, dst)
    finally:
        if tmp.exists():
            _remove(tmp)


def _old_paths(bundle: Path) -> set[str]:
    """Paths the bundle's current manifest lists (to prune those the new one drops)."""
    try:
        m = json.loads((bundle / MANIFEST).read_text(encoding="utf-8"))
        return {e["path"] for e in m.get("files", {}).values() if isinstance(e, dict) and isinstance(e.get("path"), str)}
    except (OSError, ValueError, AttributeError):
        return set()


def _prune(bundle: Path, stale: Iterable[str]) -> None:
    root = bundle.resolve()
    for rel in stale:
        p = (bundle / rel)
        try:
            resolved = p.resolve()
        except OSError:
            continue
        if root in resolved.parents and (p.exists() or p.is_symlink()):
            _remove(p)


def write_bundle_dir(
    bundle_dir: Path | str,
    *,
    name: str,
    files: Iterable[ExportedFile],
    labels: list[str],
    input_spec: dict[str, Any],
    source: dict[str, Any],
    reference_weights: Path | str,
    task: str = "classify",
    outputs: str = "logits",
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    card: str | Callable[[dict[str, Any]], str] | None = None,
    move: bool = False,
) -> dict[str, Any]:
    """Write (or refresh) a bundle folder; returns the manifest written.

    files: one ExportedFile per target (its `path` is copied in, or moved with move=True, under
    `bundle_file_name`). reference_weights: the eager model's safetensors (for verify/bench), placed at
    source["weights"]. card: the README.md text, or a function of the manifest that renders it.
    """
    from pocketvit import __version__
    from pocketvit.runtime import atomic_write_bytes, file_entry, write_manifest

    bundle = Path(bundle_dir)
    bundle.mkdir(parents=True, exist_ok=True)
    previous = _old_paths(bundle)
    entries: dict[str, Any] = {}
    license = ((extra or {}).get("provenance") or {}).get("license")
    for f in files:
        dst_name = bundle_file_name(f.target, f.path)
        place(f.path, bundle / dst_name, move=move)
        info = f.info or {}
        form = info.get("input_form", "float-nchw")
        # a drop-in file's own contract: manifest keys "outputs" and "input" from info "file_outputs" / "file_input"
        own = {k: info[f"file_{k}"] for k in ("outputs", "input") if info.get(f"file_{k}")}
        _embed_metadata(bundle / dst_name, f, info, spec=input_spec, labels=labels, name=name, task=task,
                        license=license, outputs=own.get("outputs", outputs))
        written = {"metadata": info["metadata"]} if info.get("metadata") else {}  # labels etc. inside the file
        entries[f.target] = file_entry(bundle, f.target, dst_name, f.runtime, f.precision, input_form=form, **own,
                                       **written)
    if not entries:
        raise BundleError(f"{bundle}: no model file to put in the bundle")
    source = {**source, "weights": source.get("weights", REFERENCE_WEIGHTS)}
    place(Path(reference_weights), bundle / source["weights"], move=move)
    manifest: dict[str, Any] = {
        "name": name, "task": task, "labels": list(labels), "input": input_spec, "outputs": outputs,
        "files": entries, "source": source, "exits": [], "metrics": metrics or {},
        "created_with": f"pocketvit {__version__}",
    }
    manifest.update(extra or {})
    if card is not None:
        text = card(manifest) if callable(card) else card
        atomic_write_bytes(bundle / CARD, text.encode("utf-8"))
    write_manifest(bundle, manifest)
    _prune(bundle, previous - {e["path"] for e in entries.values()})
    return manifest


def _embed_metadata(path: Path, f: ExportedFile, info: dict[str, Any], *, spec: dict[str, Any], labels: list[str],
                    name: str, task: str, license: str | None, outputs: str) -> None:
    """Labels and the image contract inside the model file, for apps that read the file alone: ONNX
    metadata_props on every .onnx, TFLite metadata on a LiteRT drop-in file (export/metadata.py)."""
    from pocketvit.export.dropin import is_dropin
    from pocketvit.export.metadata import write_onnx_metadata, write_tflite_metadata

    form = info.get("input_form", "float-nchw")
    own_spec = {**spec, **(info.get("file_input") or {})}
    if f.runtime == "onnx":
        try:
            info["metadata"] = write_onnx_metadata(path, spec=own_spec, labels=labels, name=name, license=license,
                                                   input_form=form, outputs=outputs)
        except MissingExtraError as e:  # onnxruntime without the onnx package: the file works without it
            info["metadata"] = {"written": False, "reason": str(e)}
        except Exception as e:  # noqa: BLE001 - a file onnx cannot parse keeps working as it is (the runtime decides)
            info["metadata"] = {"written": False, "reason": f"onnx could not read the file: {type(e).__name__}: {e}"}
    elif f.runtime == "litert" and is_dropin(f.target) and not (info.get("metadata") or {}).get("written"):
        try:
            info["metadata"] = write_tflite_metadata(path, spec=spec, labels=labels, name=name, license=license,
                                                     input_form=form, task=task)
        except (ExportError, MissingExtraError) as e:  # the file works without it; MediaPipe then has no label names
            info["metadata"] = {"written": False, "reason": str(e)}
    meta = info.get("metadata") or {}
    if meta.get("written") is False:
        log(f"[yellow]warning[/yellow]: {path.name}: metadata not written ({meta['reason']}); the file works "
            "without it, but apps that read the file alone see no label names")


def refresh_manifest(bundle_dir: Path | str, manifest: dict[str, Any], card: str | None = None) -> None:
    """Rewrite manifest.json (and the card) of a bundle whose files are already in place, e.g. with metrics."""
    from pocketvit.runtime import atomic_write_bytes, write_manifest

    bundle = Path(bundle_dir)
    if card is not None:
        atomic_write_bytes(bundle / CARD, card.encode("utf-8"))
    write_manifest(bundle, manifest)


# --------------------------------------------------------------------------- the output folder


_BUNDLE_NAMES = {MANIFEST, CARD, "reference"}


def check_out_dir(out: Path) -> None:
    """Refuse to write into a file, a read-only place, or a folder that holds something other than a pocketvit
    bundle (OutputError, exit 9)."""
    from pocketvit.runtime.io import writable_dir

    writable_dir(out, "--out")
    if not out.is_dir() or (out / MANIFEST).is_file():
        return
    foreign = [p.name for p in out.iterdir()
               if not p.name.startswith(".") and p.name not in _BUNDLE_NAMES and not p.name.startswith("model")]
    if foreign:
        shown = ", ".join(sorted(foreign)[:3]) + (", ..." if len(foreign) > 3 else "")
        raise OutputError(f"--out {out} is not empty and is not a pocketvit bundle (it holds {shown}); choose an "
                          "empty or new folder")
