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

from pocketvit.errors import PocketVitError

F = TypeVar("F", bound=Callable)
err_console = Console(stderr=True)


def debug_enabled() -> bool:
    return os.environ.get("POCKETVIT_DEBUG") == "1" or "--debug" in sys.argv


def handle_errors(fn: F) -> F:
    """Turn PocketVitError into one clear message and its exit code (traceback only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PocketVitError as e:
            if debug_enabled():
                raise
            err_console.print(f"[bold red]error:[/bold red] {e}", highlight=False)
            raise SystemExit(e.exit_code) from None
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
