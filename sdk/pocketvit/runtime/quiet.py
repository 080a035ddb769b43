"""Keep the runtimes' own chatter off the user's terminal (torch-free).

ExecuTorch prints `[cpuinfo_utils.cpp:...]` lines from C++ when its thread pool starts, LiteRT prints `INFO: Created
TensorFlow Lite XNNPACK delegate for CPU.` when it first allocates tensors, torch logs a `_pytree` deprecation when
executorch is imported. None of it is for the user of an app, and a JSON output must stay JSON. `quiet()` wraps the
calls that print (loading, the first run): Python warnings are ignored, log records up to WARNING dropped, and what
C/C++ code writes to file descriptor 2 or through Python's sys.stderr is captured (the descriptor is restored afterwards) into a list the backend
keeps: a runtime's WARNING / ERROR lines become recorded fallbacks, never silence.

With POCKETVIT_VERBOSE=1 (`--verbose` on the CLI) nothing is captured. The capture redirects descriptor 2 for the
whole process while the block runs, so keep the blocks short (they are: loading, a first call).
"""

from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr

VERBOSE_ENV = "POCKETVIT_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


@contextmanager
def captured_fd(fd: int = 2) -> Iterator[list[str]]:
    """Redirect file descriptor ``fd`` to a temporary file while the block runs; the yielded list receives what was
    written there (as lines) when the block ends. The descriptor is restored in every case."""
    lines: list[str] = []
    try:
        saved = os.dup(fd)
    except OSError:  # no such descriptor (a windowed app): nothing to capture
        yield lines
        return
    stream = {1: sys.stdout, 2: sys.stderr}.get(fd)
    with tempfile.TemporaryFile() as tmp:
        _flush(stream)
        os.dup2(tmp.fileno(), fd)
        try:
            yield lines
        finally:
            _flush(stream)
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            lines.extend(line for line in tmp.read().decode("utf-8", "replace").splitlines() if line.strip())


def _flush(stream) -> None:
    try:
        if stream is not None:
            stream.flush()
    except (OSError, ValueError):  # closed or detached
        pass


@contextmanager
def quiet(log: list[str] | None = None) -> Iterator[None]:
    """Silence third-party output while the block runs (see the module docstring); captured descriptor-2 lines are
    appended to ``log``."""
    if verbose():
        yield
        return
    previous = logging.root.manager.disable
    python_err = io.StringIO()  # ExecuTorch's pybindings log through Python's sys.stderr, not descriptor 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            with captured_fd(2) as lines, redirect_stderr(python_err):
                yield
        finally:
            logging.disable(previous)
            if log is not None:
                log.extend(lines)
                log.extend(line for line in python_err.getvalue().splitlines() if line.strip())


def warnings_in(log: list[str]) -> list[str]:
    """The lines of a captured log that report a problem (TFLite's `WARNING: ...` / `ERROR: ...`, glog's `W`/`E`)."""
    out = []
    for line in log:
        s = line.strip()
        if s.upper().startswith(("WARNING", "ERROR", "FATAL")) or (len(s) > 1 and s[0] in "WE" and s[1:5].isdigit()):
            out.append(s[:300])
    return out
