"""Shared CLI pieces: option types defined once, and the one place errors become exit codes."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from pocketvit.errors import OutputError, PocketVitError
from pocketvit.runtime.quiet import VERBOSE_ENV

F = TypeVar("F", bound=Callable)
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", help="Show the toolchains' own output (TensorFlow, ExecuTorch, "
                                          "LiteRT log lines, third-party warnings), hidden by default.")]
err_console = Console(stderr=True)


def debug_enabled() -> bool:
    return os.environ.get("POCKETVIT_DEBUG") == "1" or "--debug" in sys.argv


def verbose_enabled() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1" or "--verbose" in sys.argv


def quiet_terminal() -> None:
    """Keep third-party output off the user's terminal for this process (`--verbose` shows it):

    - Python warnings from other packages are ignored (pocketvit's own still show), log records up to WARNING dropped
      (pocketvit prints through rich, not logging);
    - what C/C++ code writes to file descriptor 2 (TensorFlow/absl/oneDNN lines, ExecuTorch's cpuinfo lines, LiteRT's
      delegate line) goes to a temporary file: descriptor 2 is pointed there, and Python's sys.stderr, which carries
      pocketvit's messages, progress and tracebacks, moves to a duplicate of the terminal's descriptor.
    Standard output is left alone: it carries the JSON and the tables."""
    import io
    import logging
    import tempfile
    import warnings

    for key, value in (("TF_CPP_MIN_LOG_LEVEL", "3"), ("GRPC_VERBOSITY", "ERROR"), ("LITERT_TORCH_SHOW_PROGRESS", "n")):
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"pocketvit(\.|$)")
    logging.disable(logging.WARNING)
    try:
        terminal = os.dup(2)
    except OSError:  # no descriptor 2: nothing reaches a terminal anyway
        return
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    sys.stderr.flush()
    sys.stderr = io.TextIOWrapper(io.FileIO(terminal, "w"), encoding=encoding, errors="backslashreplace",
                                  line_buffering=True)
    sink = tempfile.TemporaryFile(prefix="pocketvit-stderr-")  # noqa: SIM115 - open for the life of the process
    os.dup2(sink.fileno(), 2)
    _KEEP.append(sink)  # open for the life of the process


_KEEP: list = []


def handle_errors(fn: F) -> F:
    """Turn PocketVitError into one clear message and its exit code (traceback only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PocketVitError as e:
            if debug_enabled():
                raise
            err_console.print(f"[bold red]error:[/bold red] {e}", highlight=False, soft_wrap=True)
            raise SystemExit(e.exit_code) from None
        except OSError as e:  # the file system said no (permissions, a full disk, a path that vanished)
            if debug_enabled():
                raise
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            err_console.print(f"[bold red]error:[/bold red] {where}{e.strerror or e} — check the path, its permissions "
                              "and the free space (--debug shows where it happened)", highlight=False, soft_wrap=True)
            raise SystemExit(OutputError.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("\ninterrupted — finished stages are kept; rerun the same command to continue")
            raise SystemExit(130) from None

    return wrapper  # type: ignore[return-value]


PROMPTS_HELP = ("Zero-shot bundles: comma-separated prompts to score against: free text (\"a red dress,a leather "
                "boot\") when the bundle carries a text encoder, else names of the bundle's classes (\"a shirt,a sneaker\").")


def split_prompts(prompts: str | None) -> list[str] | None:
    """`--prompts "a shirt,a sneaker"` -> ["a shirt", "a sneaker"] (None when not given)."""
    return [p.strip() for p in prompts.split(",") if p.strip()] if prompts else None


# `--device ssh://...` on bench and verify (bench/remote.py): the options, defined once
DeviceOpt = Annotated[
    str | None,
    typer.Option("--device", help="Run it on your own device over ssh: ssh://USER@HOST[:PORT] (HOST may be a Host "
                 "of ~/.ssh/config). Uses your ssh client, keys and config; installs nothing; cleans up after itself."),
]
DevicePythonOpt = Annotated[
    str, typer.Option("--device-python", help="The device's Python that has numpy and the runtimes (e.g. "
                      "/opt/pocketvit/venv/bin/python, which apps/raspberry-pi/install.sh makes).")
]
DeviceDirOpt = Annotated[
    str | None, typer.Option("--device-dir", help="Folder on the device for the temporary files (default $TMPDIR or /tmp).")
]
SshConfigOpt = Annotated[
    Path | None, typer.Option("--ssh-config", help="An ssh config file to use instead of ~/.ssh/config (ssh -F).")
]
