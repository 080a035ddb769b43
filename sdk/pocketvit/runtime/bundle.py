"""A bundle on disk: open a folder or a .zip of one (extracted safely), validate its manifest, and hand out
model files only after their sha256 matches (see manifest.py for the format and the integrity model)."""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

from pocketvit.errors import BundleError
from pocketvit.runtime.io import sha256_file
from pocketvit.runtime.manifest import (
    MANIFEST_NAME,
    check_files_present,
    file_entry,
    validate_manifest,
    write_manifest,
)

# --------------------------------------------------------------------------- zip extraction

_extracted_dirs: list[str] = []


def _cleanup_extracted() -> None:
    for d in _extracted_dirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup_extracted)


def _check_zip_member(info: zipfile.ZipInfo, zpath: Path) -> None:
    name = info.filename
    mode = (info.external_attr >> 16) & 0xFFFF
    if stat.S_ISLNK(mode):
        raise BundleError(
            f"{zpath}: zip entry {name!r} is a symbolic link; a bundle zip may hold only plain files "
            "and folders (refusing to extract)"
        )
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise BundleError(f"{zpath}: zip entry {name!r} is not a plain file or folder (a device, pipe or socket); "
                          "a bundle zip may hold only plain files and folders (refusing to extract)")
    if info.flag_bits & 0x1:
        raise BundleError(f"{zpath}: zip entry {name!r} is encrypted; zip the bundle folder again without a password")
    bad = (
        not name
        or "\x00" in name
        or name.startswith(("/", "\\"))
        or re.match(r"^[A-Za-z]:", name) is not None
        or any(part == ".." for part in re.split(r"[\\/]", name))
    )
    if bad:
        raise BundleError(
            f"{zpath}: zip entry {name!r} would be written outside the extraction folder "
            "(absolute path or '..'); refusing to extract this archive"
        )


def extract_zip(zpath: str | os.PathLike, dest: str | os.PathLike | None = None) -> Path:
    """Safely extract a bundle zip; returns the folder that holds manifest.json.

    Every entry is checked first (no absolute paths, no '..', no symbolic links), then the
    archive is extracted to ``dest`` (default: a private temporary folder removed at exit).
    The manifest may be at the zip's root or inside a single top-level folder.
    """
    zpath = Path(zpath)
    try:
        zf = zipfile.ZipFile(zpath)
    except (zipfile.BadZipFile, OSError) as e:
        raise BundleError(f"{zpath}: not a readable zip archive ({e}); re-download the bundle") from None
    with zf:
        infos = zf.infolist()
        if not infos:
            raise BundleError(f"{zpath}: the zip is empty, so it is not a pocketvit bundle; zip the bundle folder")
        seen: set[str] = set()
        for info in infos:
            _check_zip_member(info, zpath)
            key = info.filename.rstrip("/")
            if key in seen:
                raise BundleError(f"{zpath}: the zip holds two entries named {info.filename!r}; which one is the "
                                  "bundle's is ambiguous (refusing to extract); zip the bundle folder again")
            seen.add(key)
        if dest is None:
            dest = tempfile.mkdtemp(prefix="pocketvit-bundle-")
            _extracted_dirs.append(dest)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        need = sum(i.file_size for i in infos)
        free = shutil.disk_usage(dest).free
        if need > free:
            raise BundleError(f"{zpath}: extracting it needs {need / 1e9:.1f} GB, {free / 1e9:.1f} GB are free in "
                              f"{dest}; free some space (or it is not a real bundle: a zip bomb)")
        destr = dest.resolve()
        for info in infos:
            target = (dest / info.filename).resolve()
            if target != destr and destr not in target.parents:  # belt and braces
                raise BundleError(f"{zpath}: zip entry {info.filename!r} escapes the extraction folder")
            try:
                zf.extract(info, dest)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as e:
                raise BundleError(
                    f"{zpath}: zip entry {info.filename!r} is damaged ({e}); re-download the bundle"
                ) from None
    if (dest / MANIFEST_NAME).is_file():
        return dest
    subdirs = [p for p in dest.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and (subdirs[0] / MANIFEST_NAME).is_file():
        return subdirs[0]
    raise BundleError(f"{zpath}: the zip holds no {MANIFEST_NAME}, so it is not a pocketvit bundle")


# --------------------------------------------------------------------------- Bundle


class Bundle:
    """A validated bundle folder. Use ``Bundle.open(path)``."""

    def __init__(self, root: Path, manifest: dict, source: Path):
        self.root = root
        self.manifest = manifest
        self.source = source
        self._verified: set[str] = set()

    # -- opening
    @classmethod
    def open(
        cls, path: str | os.PathLike, verify: bool = False, extract_to: str | os.PathLike | None = None
    ) -> Bundle:
        """Open a bundle folder or .zip. ``verify=True`` also checks every file's sha256 now."""
        source = Path(path)
        if not source.exists():
            raise BundleError(f"{source}: no such bundle (folder or .zip); check the path")
        if source.is_file():
            if zipfile.is_zipfile(source):
                root = extract_zip(source, extract_to)
            elif source.name == MANIFEST_NAME:
                root = source.parent
            else:
                raise BundleError(
                    f"{source}: not a bundle; pass the bundle folder (with {MANIFEST_NAME}) or its .zip"
                )
        else:
            root = source
        mpath = root / MANIFEST_NAME
        if not mpath.is_file():
            raise BundleError(
                f"{source}: not a pocketvit bundle ({MANIFEST_NAME} is missing); pass the folder "
                "`pocketvit build` wrote as <out>/bundle"
            )
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BundleError(f"{mpath}: not valid JSON ({e}); rebuild or re-download the bundle") from None
        validate_manifest(manifest, where=str(mpath))
        check_files_present(root, manifest)
        b = cls(root, manifest, source)
        if verify:
            b.verify()
        return b

    # -- manifest views
    @property
    def format_version(self) -> int:
        return self.manifest["format_version"]

    @property
    def name(self) -> str:
        return self.manifest.get("name", self.root.name)

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def labels(self) -> list[str]:
        return list(self.manifest.get("labels") or [])

    @property
    def input_spec(self) -> dict:
        return self.manifest["input"]

    @property
    def outputs(self) -> str:
        return self.manifest.get("outputs", "logits")

    @property
    def exits(self) -> list[dict]:
        return list(self.manifest.get("exits") or [])

    @property
    def targets(self) -> list[str]:
        return list(self.manifest["files"])

    def file_info(self, target: str) -> dict:
        files = self.manifest["files"]
        if target not in files:
            raise BundleError(
                f"{self.source}: the bundle has no target {target!r}; it has: {', '.join(files)}"
            )
        return files[target]

    def runtime_of(self, target: str) -> str:
        return self.file_info(target)["runtime"]

    def input_form(self, target: str) -> str:
        return self.file_info(target).get("input_form", "float-nchw")

    def input_spec_of(self, target: str) -> dict:
        """The input contract of one file: the manifest's, with the file's own overrides (channels, colour)."""
        over = self.file_info(target).get("input")
        return {**self.input_spec, **over} if over else self.input_spec

    def outputs_of(self, target: str) -> str:
        """What one file outputs: its own 'outputs' (a drop-in file gives probabilities), else the manifest's."""
        return self.file_info(target).get("outputs", self.outputs)

    # -- integrity
    def _verify_one(self, rel: str, expected: str) -> Path:
        full = self.root / rel
        if rel in self._verified:
            return full
        if not full.exists():
            raise BundleError(f"{full}: missing from the bundle; rebuild or re-download the bundle")
        actual = sha256_file(full)
        if actual != expected:
            raise BundleError(
                f"{rel}: sha256 mismatch — the file is damaged or was modified; rebuild or re-download "
                f"the bundle (expected {expected[:12]}…, got {actual[:12]}…)"
            )
        self._verified.add(rel)
        return full

    def model_path(self, target: str) -> Path:
        """Path of ``target``'s model file, sha256-verified."""
        e = self.file_info(target)
        return self._verify_one(e["path"], e["sha256"])

    def segment_paths(self, target: str) -> dict[str, Path]:
        """{method: path} of ``target``'s early-exit program (files[target]["segments"]), sha256-verified;
        several methods may share one file (ExecuTorch methods, LiteRT signatures)."""
        return {g["method"]: self._verify_one(g["path"], g["sha256"])
                for g in self.file_info(target).get("segments") or []}

    def verified_path(self, rel: str, sha256: str) -> Path:
        """``root/rel`` once its sha256 matches (checked once per file): for files outside ``files``."""
        return self._verify_one(rel, sha256)

    def text_embeddings_path(self) -> Path | None:
        """Path of text_embeddings.npy (zero-shot), sha256-verified when the manifest records one."""
        rel = self.manifest.get("text_embeddings")
        if not rel:
            return None
        return self._verify_one(rel, self.manifest["text_embeddings_sha256"])

    def verify(self, targets: Iterable[str] | None = None) -> None:
        """Check sha256 of every listed file (or only ``targets``) and of text_embeddings."""
        for t in targets if targets is not None else self.targets:
            self.model_path(t)
            self.segment_paths(t)
        if self.manifest.get("text_embeddings"):
            self.text_embeddings_path()
        te = self.manifest.get("text_encoder")
        if te and targets is None:
            for e in [te["tokenizer"], *te["files"].values()]:
                self._verify_one(e["path"], e["sha256"])

    def __repr__(self) -> str:
        return f"Bundle({str(self.root)!r}, task={self.task!r}, targets={self.targets})"

    # -- writing helpers (used by the pipeline)
    write_manifest = staticmethod(write_manifest)
    file_entry = staticmethod(file_entry)
