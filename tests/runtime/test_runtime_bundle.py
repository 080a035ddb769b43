"""Bundle loading: what it accepts, and every way it refuses (each naming the file and the fix)."""

from __future__ import annotations

import json
import os
import re
import stat
import zipfile
from pathlib import Path

import pytest
from pocketvit.errors import BundleError, PocketVitError
from pocketvit.runtime import Bundle, file_entry, load, sha256_file, write_manifest
from runtime_testkit import GRAY_SPEC, LABELS, random_images, write_bundle

RUNTIME_DIR = Path(__file__).resolve().parents[2] / "sdk" / "pocketvit" / "runtime"


def fake_bundle(root: Path, content: bytes = b"not really a model" * 10) -> Path:
    """A structurally valid bundle whose model file is opaque bytes (never reaches a runtime)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.onnx").write_bytes(content)
    return write_bundle(root, {"onnx": ("model.onnx", "onnx", "fp32", {})})


def edit_manifest(root: Path, **changes) -> None:
    m = json.loads((root / "manifest.json").read_text())
    m.update(changes)
    (root / "manifest.json").write_text(json.dumps(m))


def test_helpers_write_a_valid_manifest(tmp_path):
    root = fake_bundle(tmp_path / "b")
    m = json.loads((root / "manifest.json").read_text())
    e = m["files"]["onnx"]
    assert e == {
        "path": "model.onnx",
        "sha256": sha256_file(root / "model.onnx"),
        "bytes": (root / "model.onnx").stat().st_size,
        "runtime": "onnx",
        "precision": "fp32",
    }
    assert m["format_version"] == 1 and m["labels"] == LABELS and m["input"] == GRAY_SPEC
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []  # no temp files left
    b = Bundle.open(root, verify=True)
    assert b.targets == ["onnx"] and b.task == "classify" and b.model_path("onnx") == root / "model.onnx"
    # the runtime is taken from the target name when not given; extra keys are kept
    assert file_entry(root, "onnx-int8", "model.onnx", input_form="uint8-nhwc")["runtime"] == "onnx"
    assert file_entry(root, "onnx-int8", "model.onnx", input_form="uint8-nhwc")["input_form"] == "uint8-nhwc"


def test_directory_entries_hash_as_a_tree(tmp_path):
    pkg = tmp_path / "m.mlpackage"
    (pkg / "Data").mkdir(parents=True)
    (pkg / "Data" / "weights.bin").write_bytes(b"w" * 100)
    (pkg / "Manifest.json").write_text("{}")
    e = file_entry(tmp_path, "coreml", "m.mlpackage")
    assert e["runtime"] == "coreml" and e["bytes"] == 102
    (pkg / "Data" / "weights.bin").write_bytes(b"w" * 99 + b"x")
    assert sha256_file(pkg) != e["sha256"]


def test_missing_path(tmp_path):
    with pytest.raises(BundleError, match=re.escape(str(tmp_path / "nope")) + ": no such bundle"):
        load(tmp_path / "nope")


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="manifest.json is missing"):
        Bundle.open(tmp_path)
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(BundleError, match="not a bundle"):
        Bundle.open(tmp_path / "x.txt")


def test_manifest_not_json(tmp_path):
    root = fake_bundle(tmp_path / "b")
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="manifest.json: not valid JSON"):
        Bundle.open(root)


def test_format_version_missing_or_newer(tmp_path):
    root = fake_bundle(tmp_path / "b")
    m = json.loads((root / "manifest.json").read_text())
    del m["format_version"]
    (root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="'format_version' is missing"):
        Bundle.open(root)
    edit_manifest(root, format_version=2)
    with pytest.raises(
        BundleError, match=r"written by a newer pocketvit \(format_version 2\).*[Uu]pgrade pocketvit"
    ):
        load(root)


def test_listed_file_missing(tmp_path):
    root = fake_bundle(tmp_path / "b")
    (root / "model.onnx").unlink()
    with pytest.raises(
        BundleError, match=r"model.onnx: listed in manifest.json \(files\['onnx'\]\) but missing"
    ):
        load(root)


def test_sha256_mismatch_is_caught_before_the_runtime(tmp_path):
    root = fake_bundle(tmp_path / "b")
    data = bytearray((root / "model.onnx").read_bytes())
    data[5] ^= 0x01  # one flipped bit, same size
    (root / "model.onnx").write_bytes(bytes(data))
    Bundle.open(root)  # structure is fine; only the hash tells
    with pytest.raises(
        BundleError,
        match="model.onnx: sha256 mismatch — the file is damaged or was modified; "
        "rebuild or re-download the bundle",
    ):
        load(root, target="onnx")
    with pytest.raises(BundleError, match="sha256 mismatch"):
        Bundle.open(root, verify=True)


def test_truncated_file(tmp_path):
    root = fake_bundle(tmp_path / "b")
    (root / "model.onnx").write_bytes(b"short")
    with pytest.raises(BundleError, match="model.onnx: size is 5 bytes but manifest.json records"):
        Bundle.open(root)


@pytest.mark.parametrize("bad", ["../outside.onnx", "/etc/passwd", "sub/../../x.onnx", "C:/x.onnx"])
def test_manifest_path_escaping(tmp_path, bad):
    root = fake_bundle(tmp_path / "b")
    m = json.loads((root / "manifest.json").read_text())
    m["files"]["onnx"]["path"] = bad
    (root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"path .* (is absolute|points outside the bundle)"):
        Bundle.open(root)


def test_symlink_out_of_bundle_refused(tmp_path):
    root = fake_bundle(tmp_path / "b")
    (tmp_path / "elsewhere.onnx").write_bytes((root / "model.onnx").read_bytes())
    (root / "model.onnx").unlink()
    os.symlink(tmp_path / "elsewhere.onnx", root / "model.onnx")
    with pytest.raises(BundleError, match="resolves outside the bundle folder"):
        Bundle.open(root)


def test_bad_manifest_fields_name_the_field(tmp_path):
    root = fake_bundle(tmp_path / "b")
    for change, msg in [
        ({"task": "detect"}, "'task' must be one of"),
        ({"labels": []}, "'labels' must be a non-empty list"),
        ({"outputs": "boxes"}, "'outputs' must be one of"),
        ({"input": {**GRAY_SPEC, "color_order": "RGB"}}, "does not fit channels=1"),
        ({"files": {}}, "'files' must be a non-empty object"),
    ]:
        fake_bundle(root)
        edit_manifest(root, **change)
        with pytest.raises(BundleError, match=msg):
            Bundle.open(root)


def _zip(path: Path, entries: dict, symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc/passwd")
    return path


def test_zip_bundle_loads(tiny, tmp_path):
    zpath = tmp_path / "bundle.zip"
    with zipfile.ZipFile(zpath, "w") as z:  # inside a top-level folder, as `zip -r bundle.zip bundle/` makes
        for f in ("manifest.json", "model.onnx", "model.tflite", "model.pte", "exits.tflite"):
            z.write(tiny["root"] / f, f"bundle/{f}")
    p = load(zpath, target="onnx")
    assert p.bundle.root != tiny["root"] and (p.bundle.root / "manifest.json").is_file()
    ref = load(tiny["root"], target="onnx")
    img = random_images(1)[0]
    assert p.predict(img).label == ref.predict(img).label


@pytest.mark.parametrize("entry", ["../evil", "bundle/../../evil", "/abs/evil", "..\\evil"])
def test_zip_entry_escaping_refused(tmp_path, entry):
    root = fake_bundle(tmp_path / "b")
    zpath = _zip(
        tmp_path / "bad.zip",
        {
            "manifest.json": (root / "manifest.json").read_bytes(),
            "model.onnx": (root / "model.onnx").read_bytes(),
            entry: b"pwned",
        },
    )
    dest = tmp_path / "x"
    with pytest.raises(BundleError, match=r"zip entry .*evil.* outside the extraction folder"):
        Bundle.open(zpath, extract_to=dest)
    assert not (tmp_path / "evil").exists() and not dest.exists()  # checked before anything is written


def test_zip_symlink_refused(tmp_path):
    root = fake_bundle(tmp_path / "b")
    zpath = _zip(
        tmp_path / "bad.zip", {"manifest.json": (root / "manifest.json").read_bytes()}, symlink="model.onnx"
    )
    with pytest.raises(BundleError, match="zip entry 'model.onnx' is a symbolic link"):
        Bundle.open(zpath)


def test_zip_without_manifest(tmp_path):
    zpath = _zip(tmp_path / "x.zip", {"readme.txt": b"hi"})
    with pytest.raises(BundleError, match="holds no manifest.json"):
        Bundle.open(zpath)


def test_write_manifest_refuses_what_load_would_refuse(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"abc")
    entry = file_entry(tmp_path, "onnx", "model.onnx")
    base = {"name": "t", "task": "classify", "labels": LABELS, "input": GRAY_SPEC, "files": {"onnx": entry}}
    write_manifest(tmp_path, base)
    with pytest.raises(BundleError, match="missing from the bundle"):
        write_manifest(tmp_path, {**base, "files": {"onnx": {**entry, "path": "other.onnx"}}})
    with pytest.raises(BundleError, match="points outside"):
        file_entry(tmp_path, "onnx", "../model.onnx")
    with pytest.raises(BundleError, match="unknown runtime"):
        file_entry(tmp_path, "tensorrt", "model.onnx")


def test_errors_are_pocketvit_errors():
    assert issubclass(BundleError, PocketVitError)


def test_no_torch_import_lines_in_runtime():
    pat = re.compile(r"^\s*(import torch|from torch)", re.MULTILINE)
    offenders = [str(p) for p in RUNTIME_DIR.rglob("*.py") if pat.search(p.read_text())]
    assert offenders == []
    # the runtime imports no other pocketvit module than errors
    other = re.compile(r"^\s*(from|import)\s+pocketvit\.(?!errors\b|runtime\b)", re.MULTILINE)
    assert [str(p) for p in RUNTIME_DIR.rglob("*.py") if other.search(p.read_text())] == []
