"""What every target module shares: the result type, atomic writes, error wording, quiet toolchains.

Imports nothing heavy: `import pocketvit.export` must stay instant.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Iterator

from pocketvit.errors import ExportError, MissingExtraError
from pocketvit.runtime.targets import RUNTIMES, runtime_info

# the float export targets: one per runtime (int8 targets live in export/quantize, drop-in files in export/dropin)
TARGETS = RUNTIMES


@dataclass
class ExportedFile:
    """One file written by `export_model`.

    `info` holds target-specific facts (JSON-serialisable): for executorch the delegate calls and the
    operators left outside the delegate, for onnx the opset and node count, for litert the op counts,
    for coreml the spec check done in place of execution on Linux.
    """

    target: str
    path: Path
    runtime: str
    precision: str
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise ExportError(f"Unknown export target '{target}'. Choose one of: {', '.join(TARGETS)}.")
    return target


def file_extension(target: str) -> str:
    """The file extension (with dot) of a target's file: .pte, .tflite, .mlpackage (a folder), .onnx."""
    return runtime_info(check_target(target)).suffix


def runtime_of(target: str) -> str:
    return check_target(target)



# --- toolchain imports --------------------------------------------------------------------------------

def require(module: str, extra: str, why: str = ""):
    """Import a toolchain module, or raise MissingExtraError naming the pip extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        missing = getattr(exc, "name", None) or ""
        reason = why if (not missing or missing.split(".")[0] == top) else f"{why}; import failed: {exc}"
        raise MissingExtraError(top, extra, reason.strip("; ")) from exc


# --- atomic writes ------------------------------------------------------------------------------------

def _temp_sibling(final: Path) -> Path:
    # Keep the suffix: some toolchains (coremltools) insist on it.
    return final.with_name(f".{final.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{final.suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_path(final: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `final`; on success move it into place, on failure remove it.

    Works for a file (os.replace) and for a folder such as an .mlpackage: the stale folder is moved
    aside first, the new one renamed in, then the old one deleted, so the final path never holds a
    half-written artifact.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(final)
    try:
        yield tmp
        if not tmp.exists():
            raise ExportError(f"The toolchain reported success but wrote nothing to {final}.")
        if tmp.is_dir():
            if final.exists() or final.is_symlink():
                trash = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
                os.replace(final, trash)
                os.replace(tmp, final)
                _remove(trash)
            else:
                os.replace(tmp, final)
        else:
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)
            os.replace(tmp, final)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)


# --- error wording ------------------------------------------------------------------------------------

_OP_PATTERNS = (
    re.compile(r"Unsupported fx node:? *'?([\w.:]+)"),
    re.compile(r"\b(aten(?:\.|::)\w+(?:\.\w+)?)"),
    re.compile(r"'(tfl\.\w+)'"),
    re.compile(r"\b(tfl\.\w+)"),
    re.compile(r"\b(stablehlo\.\w+)"),
    re.compile(r"convert function for op '(\w+)'"),
    re.compile(r"No (?:symbolic|translation) function for '?([\w.:]+)"),
    re.compile(r"Exporting the operator '?([\w.:]+)"),
)


def offending_op(text: str) -> str | None:
    """Best guess at the operator an exception is about, from its text."""
    for pat in _OP_PATTERNS:
        m = pat.search(text)
        if m and m.lastindex and m.group(1):
            return m.group(1)
    return None


def _first_line(text: str, limit: int = 240) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""


def short_reason(exc: BaseException) -> str:
    """'Type: first line of the message', for info dicts and messages."""
    line = _first_line(str(exc), 200)
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def lowering_error(model_name: str, target: str, exc: BaseException, stage: str = "") -> ExportError:
    """An ExportError for a failed lowering: names model, target, operator (when found) and what to try."""
    text = f"{type(exc).__name__}: {exc}"
    op = offending_op(text)
    where = f" at {op}" if op else ""
    during = f" during {stage}" if stage else ""
    others = ", ".join(t for t in TARGETS if t != target)
    detail = _first_line(str(exc)) or type(exc).__name__
    msg = (
        f"Could not export '{model_name}' to {target}{where}{during}: {type(exc).__name__}: {detail}\n"
        f"Try another target ({others}), rewrite the module that uses "
        f"{op or 'the failing operator'}, or rerun with --debug (POCKETVIT_DEBUG=1) for the full traceback."
    )
    err = ExportError(msg)
    err.target = target
    err.model_name = model_name
    err.operator = op
    return err


# --- quiet toolchains ---------------------------------------------------------------------------------

@contextlib.contextmanager
def env_override(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore them."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
