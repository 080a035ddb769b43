"""Atomic file writes, content hashes and sizes (torch-free): a killed build never leaves a file a rerun would trust.

A folder (a Core ML .mlpackage) is hashed as a tree: sha256 over the lines
``"<sha256 of file>  <relative posix path>\\n"`` for every regular file, sorted by path."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from pocketvit.errors import BundleError, OutputError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")




def hash_config(data: Any) -> str:
    """Stable short hash of JSON-able data."""
    blob = json.dumps(data, sort_keys=True, default=_jsonable).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file, or of a directory tree (see module docstring)."""
    p = Path(path)
    if p.is_dir():
        lines = []
        for rel, f in _tree_files(p):
            lines.append(f"{_sha256_plain(f)}  {rel}\n")
        return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()
    return _sha256_plain(p)


def _sha256_plain(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tree_files(root: Path) -> list[tuple[str, Path]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in list(dirnames):
            if (Path(dirpath) / name).is_symlink():
                raise BundleError(
                    f"{Path(dirpath, name)}: symbolic links are not allowed inside a bundle entry; "
                    "replace it with the real folder"
                )
        for name in sorted(filenames):
            f = Path(dirpath) / name
            if f.is_symlink():
                raise BundleError(
                    f"{f}: symbolic links are not allowed inside a bundle entry; replace it with the real file"
                )
            out.append((f.relative_to(root).as_posix(), f))
    out.sort(key=lambda t: t[0])
    return out


def path_bytes(path: str | os.PathLike) -> int:
    """Size of a file, or of every file under a folder (a Core ML .mlpackage)."""
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for _, f in _tree_files(p))
    return p.stat().st_size


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, synced, then renamed into place."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def writable_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``path`` as a folder this process can write into (it may not exist yet: its nearest existing parent is probed,
    nothing is created), or OutputError naming ``flag`` and the fix: a file where a folder is needed, a read-only
    place."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{flag} {p} is a file; pass a folder (it is created when missing)")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{flag} {p}: {probe} is a file, not a folder; pass a folder path")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise OutputError(f"{flag} {p}: cannot write in {probe} ({e.strerror or e}); choose a folder you can write "
                          "to") from None
    return p


def writable_file(path: str | os.PathLike, flag: str) -> Path:
    """``path`` as a file this process can write (its folder is probed as by writable_dir)."""
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{flag} {p} is a folder; pass a file name (e.g. {p / 'result.json'})")
    for parent in p.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"{flag} {p}: {parent} is a file, not a folder; pass a path in a folder")
    writable_dir(p.parent, flag=f"{flag} {p}: its folder")
    return p
