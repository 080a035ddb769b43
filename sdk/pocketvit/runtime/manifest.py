"""The bundle: a folder (or a .zip of one) with manifest.json and the model files.

Torch-free: only the standard library and numpy-free code here.

Integrity model:
- ``Bundle.open`` reads and validates manifest.json and checks that every file it lists
  exists inside the bundle folder with the recorded byte size (cheap; catches missing and
  truncated files).
- sha256 is checked before a file reaches a runtime: ``Bundle.model_path(target)`` and
  ``Bundle.text_embeddings_path()`` hash the file the first time they hand it out, and
  ``Bundle.verify()`` (or ``Bundle.open(..., verify=True)``) hashes every listed file.
  A flipped byte is not detected by the runtimes themselves (they run it with changed
  outputs), so this check is the only protection.

A directory entry (a Core ML ``.mlpackage``) is hashed as a tree: sha256 over the lines
``"<sha256 of file>  <relative posix path>\\n"`` for every regular file, sorted by path.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from pocketvit.errors import BundleError
from pocketvit.runtime.io import atomic_write_bytes, path_bytes, sha256_file
from pocketvit.runtime.targets import RUNTIMES, TARGETS

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

TASKS = ("classify", "zero-shot", "embed")
OUTPUTS = ("logits", "probabilities", "embedding")
# float-nchw: normalized float (the manifest's layout); uint8-nhwc / float-nhwc: raw 0..255 pixels (uint8, or
# float32 holding the same values), NHWC, the model normalizes inside (drop-in files)
INPUT_FORMS = ("float-nchw", "uint8-nhwc", "float-nhwc")
# keys a file entry's "input" may override (a drop-in file of a gray model takes RGB pixels)
FILE_INPUT_KEYS = ("channels", "color_order")
COLOR_ORDERS = ("GRAY", "RGB", "BGR")
LAYOUTS = ("NCHW", "NHWC")

_TARGET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def file_entry(
    bundle_dir: str | os.PathLike,
    target: str,
    path: str,
    runtime: str | None = None,
    precision: str = "fp32",
    **extra: Any,
) -> dict:
    """Manifest ``files`` entry for ``bundle_dir/path``: {path, sha256, bytes, runtime, precision, **extra}.

    ``runtime`` defaults to the part of ``target`` before the first '-' (``litert-int8`` -> ``litert``).
    Extra keys (``input_form="uint8-nhwc"``, ...) are copied as given. Use as
    ``manifest["files"][target] = file_entry(dir, target, "model.pte", "executorch", "fp32")``.
    """
    if not _TARGET_NAME.match(target or ""):
        raise BundleError(f"target name {target!r} is not valid (use e.g. one of {', '.join(TARGETS)})")
    runtime = runtime or target.split("-", 1)[0]
    if runtime not in RUNTIMES:
        raise BundleError(f"target {target!r}: unknown runtime {runtime!r} (known: {', '.join(RUNTIMES)})")
    root = Path(bundle_dir)
    rel = _safe_relpath(path, where=f"target {target!r}")
    full = root / rel
    if not full.exists():
        raise BundleError(f"{full}: file for target {target!r} does not exist; write it before its entry")
    form = extra.get("input_form", "float-nchw")
    if form not in INPUT_FORMS:
        raise BundleError(f"target {target!r}: input_form {form!r} is not one of {', '.join(INPUT_FORMS)}")
    return {
        "path": rel,
        "sha256": sha256_file(full),
        "bytes": path_bytes(full),
        "runtime": runtime,
        "precision": precision,
        **extra,
    }


def segment_entry(bundle_dir: str | os.PathLike, method: str, path: str) -> dict:
    """One item of ``files[target]["segments"]``: {method, path, sha256, bytes} for ``bundle_dir/path``."""
    rel = _safe_relpath(path, where=f"segment {method!r}")
    full = Path(bundle_dir) / rel
    if not full.exists():
        raise BundleError(f"{full}: file of segment {method!r} does not exist; write it before its entry")
    return {"method": method, "path": rel, "sha256": sha256_file(full), "bytes": path_bytes(full)}


def write_manifest(bundle_dir: str | os.PathLike, manifest: dict) -> Path:
    """Validate ``manifest`` against the files in ``bundle_dir`` and write manifest.json atomically.

    ``format_version`` is filled in when absent, and ``text_embeddings_sha256`` is computed when the
    manifest names a ``text_embeddings`` file without it. Returns the manifest path.
    """
    root = Path(bundle_dir)
    manifest = dict(manifest)
    manifest.setdefault("format_version", FORMAT_VERSION)
    manifest.setdefault("exits", [])
    manifest.setdefault("text_embeddings", None)
    manifest.setdefault("metrics", {})
    where = root / MANIFEST_NAME
    te = manifest.get("text_embeddings")
    if te and "text_embeddings_sha256" not in manifest:
        rel = _safe_relpath(te, where=f"{where}: text_embeddings")
        if not (root / rel).is_file():
            raise BundleError(
                f"{root / rel}: text embeddings file does not exist; write it before the manifest"
            )
        manifest["text_embeddings_sha256"] = sha256_file(root / rel)
    validate_manifest(manifest, where=str(where))
    check_files_present(root, manifest)
    data = json.dumps(manifest, indent=2, sort_keys=False, allow_nan=False) + "\n"
    atomic_write_bytes(where, data.encode("utf-8"))
    return where


# --------------------------------------------------------------------------- validation


def _safe_relpath(path: Any, where: str) -> str:
    """A bundle-relative POSIX path that cannot escape the bundle folder."""
    if not isinstance(path, str) or not path.strip():
        raise BundleError(f"{where}: 'path' must be a non-empty string, got {path!r}")
    if "\\" in path or "\x00" in path:
        raise BundleError(f"{where}: path {path!r} must use '/' separators and no NUL characters")
    pp = PurePosixPath(path)
    if pp.is_absolute() or re.match(r"^[A-Za-z]:", path):
        raise BundleError(
            f"{where}: path {path!r} is absolute; paths in a bundle must be relative to the bundle folder"
        )
    if any(part == ".." for part in pp.parts):
        raise BundleError(
            f"{where}: path {path!r} points outside the bundle folder ('..'); "
            "keep every model file inside the bundle"
        )
    rel = pp.as_posix()
    if rel in (".", ""):
        raise BundleError(f"{where}: path {path!r} names the bundle folder itself, not a file")
    return rel


def _require(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise BundleError(f"{where}: {msg}")


def validate_manifest(m: Any, where: str = MANIFEST_NAME) -> None:
    """Check the manifest's structure (not the files). Raises BundleError naming the field."""
    _require(isinstance(m, dict), where, "the manifest must be a JSON object")
    fv = m.get("format_version")
    _require(
        fv is not None,
        where,
        "'format_version' is missing; this is not a pocketvit bundle manifest (rebuild the bundle)",
    )
    _require(
        isinstance(fv, int) and not isinstance(fv, bool) and fv >= 1,
        where,
        f"'format_version' must be a positive integer, got {fv!r}",
    )
    if fv > FORMAT_VERSION:
        raise BundleError(
            f"{where}: this bundle was written by a newer pocketvit (format_version {fv}); "
            f"this pocketvit reads format_version {FORMAT_VERSION}. Upgrade pocketvit "
            "(pip install -U pocketvit)"
        )
    task = m.get("task")
    _require(task in TASKS, where, f"'task' must be one of {', '.join(TASKS)}, got {task!r}")
    labels = m.get("labels")
    if task in ("classify", "zero-shot"):
        _require(
            isinstance(labels, list) and len(labels) > 0 and all(isinstance(x, str) for x in labels),
            where,
            f"'labels' must be a non-empty list of strings for task {task!r}",
        )
    elif labels is not None:
        _require(
            isinstance(labels, list) and all(isinstance(x, str) for x in labels),
            where,
            "'labels' must be a list of strings",
        )
    _validate_input(m.get("input"), where)
    outputs = m.get("outputs", "logits")
    _require(outputs in OUTPUTS, where, f"'outputs' must be one of {', '.join(OUTPUTS)}, got {outputs!r}")
    if task in ("zero-shot", "embed"):
        _require(
            outputs == "embedding",
            where,
            f"task {task!r} needs 'outputs': 'embedding' (the model returns an image embedding)",
        )
    if task == "zero-shot":
        _require(
            isinstance(m.get("text_embeddings"), str),
            where,
            "task 'zero-shot' needs 'text_embeddings': the bundle path of text_embeddings.npy",
        )
    scale = m.get("logit_scale", 100.0)
    _require(
        isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0,
        where,
        f"'logit_scale' (zero-shot softmax temperature) must be a positive number, got {scale!r}",
    )
    if m.get("text_embeddings") is not None:
        _safe_relpath(m["text_embeddings"], where=f"{where}: text_embeddings")
        sha = m.get("text_embeddings_sha256")
        _require(
            isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha) is not None,
            where,
            "'text_embeddings_sha256' (64-character hex digest of the text embeddings file) is missing "
            "or malformed; rebuild the bundle",
        )
    if m.get("text_encoder") is not None:  # typed prompts on the device (runtime/text.py)
        from .text import validate_text_encoder

        validate_text_encoder(m["text_encoder"], where)
    files = m.get("files")
    _require(isinstance(files, dict) and files, where, "'files' must be a non-empty object {target: entry}")
    for target, entry in files.items():
        w = f"{where}: files[{target!r}]"
        _require(bool(_TARGET_NAME.match(target)), w, "target names are lower-case words like 'litert-int8'")
        _require(isinstance(entry, dict), w, "each entry must be an object {path, sha256, bytes, runtime}")
        _safe_relpath(entry.get("path"), where=w)
        sha = entry.get("sha256")
        _require(
            isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha) is not None,
            w,
            "'sha256' must be a 64-character lower-case hex digest",
        )
        rt = entry.get("runtime")
        _require(rt in RUNTIMES, w, f"'runtime' must be one of {', '.join(RUNTIMES)}, got {rt!r}")
        form = entry.get("input_form", "float-nchw")
        _require(
            form in INPUT_FORMS, w, f"'input_form' must be one of {', '.join(INPUT_FORMS)}, got {form!r}"
        )
        b = entry.get("bytes")
        _require(
            b is None or (isinstance(b, int) and not isinstance(b, bool) and b >= 0),
            w,
            "'bytes' must be a non-negative integer",
        )
        segs = entry.get("segments")
        if segs is not None:
            _require(
                isinstance(segs, list) and segs and all(isinstance(g, dict) for g in segs),
                w,
                "'segments' (early-exit program) must be a non-empty list of {method, path, sha256}",
            )
            for j, g in enumerate(segs):
                _require(isinstance(g.get("method"), str), f"{w}: segments[{j}]", "'method' must be a string")
                _safe_relpath(g.get("path"), where=f"{w}: segments[{j}]")
                _require(
                    isinstance(g.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", g["sha256"]) is not None,
                    f"{w}: segments[{j}]",
                    "'sha256' must be a 64-character lower-case hex digest",
                )
        fout = entry.get("outputs")
        _require(fout is None or fout in OUTPUTS, w, f"'outputs' must be one of {', '.join(OUTPUTS)}, got {fout!r}")
        over = entry.get("input")
        if over is not None:
            _require(
                isinstance(over, dict) and set(over) <= set(FILE_INPUT_KEYS),
                w,
                f"'input' may only override {', '.join(FILE_INPUT_KEYS)}",
            )
            _validate_input({**m["input"], **over}, w)
    exits = m.get("exits", [])
    _require(isinstance(exits, list), where, "'exits' must be a list")
    for i, e in enumerate(exits):
        w = f"{where}: exits[{i}]"
        _require(isinstance(e, dict), w, "each exit must be an object {name, method, threshold}")
        _require(isinstance(e.get("name"), str), w, "'name' must be a string")
        _require(
            isinstance(e.get("method", e.get("signature")), str),
            w,
            "'method' (ExecuTorch method / LiteRT signature name) must be a string",
        )
        th = e.get("threshold")
        last = i == len(exits) - 1
        _require(
            (th is None and last) or (isinstance(th, (int, float)) and not isinstance(th, bool)),
            w,
            "'threshold' must be a number (only the last, final segment may have null)",
        )


def _validate_input(spec: Any, where: str) -> None:
    w = f"{where}: input"
    _require(isinstance(spec, dict), where, "'input' must be an object (the preprocessing contract)")
    for key in ("height", "width", "channels"):
        v = spec.get(key)
        _require(
            isinstance(v, int) and not isinstance(v, bool) and v > 0, w, f"'{key}' must be a positive integer"
        )
    _require(spec.get("layout", "NCHW") in LAYOUTS, w, f"'layout' must be one of {', '.join(LAYOUTS)}")
    co = spec.get("color_order", "RGB" if spec["channels"] == 3 else "GRAY")
    _require(co in COLOR_ORDERS, w, f"'color_order' must be one of {', '.join(COLOR_ORDERS)}, got {co!r}")
    _require(
        (co == "GRAY") == (spec["channels"] == 1),
        w,
        f"color_order {co!r} does not fit channels={spec['channels']} (GRAY needs 1, RGB/BGR need 3)",
    )
    r = spec.get("resize")
    _require(
        r is None
        or (isinstance(r, int) and not isinstance(r, bool) and r > 0)
        or (isinstance(r, list) and len(r) == 2 and all(isinstance(v, int) and v > 0 for v in r)),
        w,
        "'resize' must be null, a positive integer (shorter side) or [height, width]",
    )
    c = spec.get("crop")
    _require(
        c is None or (isinstance(c, list) and len(c) == 2 and all(isinstance(v, int) and v > 0 for v in c)),
        w,
        "'crop' must be null or [height, width]",
    )
    if c is not None:
        _require(
            c == [spec["height"], spec["width"]],
            w,
            f"'crop' {c} must equal [height, width] = {[spec['height'], spec['width']]}",
        )
    for key in ("mean", "std"):
        v = spec.get(key)
        _require(
            v is None
            or (
                isinstance(v, list)
                and len(v) in (1, spec["channels"])
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
            ),
            w,
            f"'{key}' must be a list of 1 or {spec['channels']} numbers",
        )
    if spec.get("std") is not None:
        _require(all(x != 0 for x in spec["std"]), w, "'std' must not contain 0")
    s = spec.get("scale", 1 / 255)
    _require(isinstance(s, (int, float)) and not isinstance(s, bool), w, "'scale' must be a number")


def listed_files(m: dict) -> list[tuple[str, str, int | None]]:
    """(what, path relative to the bundle, bytes or None) for every file the manifest lists: the targets' files and
    their early-exit segments, text embeddings, the text encoder's files."""
    entries: list[tuple[str, str, int | None]] = [
        (f"files[{t!r}]", e["path"], e.get("bytes")) for t, e in m["files"].items()
    ]
    entries += [
        (f"files[{t!r}].segments[{j}]", g["path"], g.get("bytes"))
        for t, e in m["files"].items()
        for j, g in enumerate(e.get("segments") or [])
    ]
    if m.get("text_embeddings"):
        entries.append(("text_embeddings", m["text_embeddings"], None))
    from .text import text_encoder_entries

    return entries + text_encoder_entries(m)


def check_files_present(root: Path, m: dict) -> None:
    rootr = root.resolve()
    for what, rel, nbytes in listed_files(m):
        full = root / rel
        try:
            resolved = full.resolve()
        except OSError as e:  # pragma: no cover - symlink loops
            raise BundleError(f"{full}: cannot resolve ({e})") from None
        if resolved != rootr and rootr not in resolved.parents:
            raise BundleError(
                f"{full}: {what} resolves outside the bundle folder (through a symbolic link); "
                "keep every model file inside the bundle"
            )
        if not full.exists():
            raise BundleError(
                f"{full}: listed in manifest.json ({what}) but missing from the bundle; "
                "rebuild or re-download the bundle"
            )
        if nbytes is not None:
            actual = path_bytes(full)
            if actual != nbytes:
                raise BundleError(
                    f"{rel}: size is {actual} bytes but manifest.json records {nbytes} — the file is "
                    "truncated, damaged or was modified; rebuild or re-download the bundle"
                )
