"""Rich progress bars with ETA, shared by training, caching and evaluation."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def _quiet() -> bool:
    return os.environ.get("POCKETVIT_QUIET") == "1"


@contextmanager
def progress_bar(description: str, total: int):
    """Yield an `advance(n, **fields)` callable; a no-op when POCKETVIT_QUIET=1."""
    if _quiet():
        yield lambda n=1, **kw: None
        return
    if not console.is_terminal:
        yield _plain_progress(description, total)
        return
    columns = [
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(description, total=total, info="")

        def advance(n: int = 1, info: str = "") -> None:
            bar.update(task, advance=n, info=info)

        yield advance


def log(message: str) -> None:
    if not _quiet():
        console.print(message)


def _plain_progress(description: str, total: int):
    """Logs (CI, nohup) get a line every 10% with the ETA instead of a live bar."""
    state = {"done": 0, "next": 0.1, "start": time.monotonic()}

    def advance(n: int = 1, info: str = "") -> None:
        state["done"] += n
        frac = state["done"] / max(1, total)
        if frac >= state["next"] or state["done"] >= total:
            elapsed = time.monotonic() - state["start"]
            eta = elapsed / max(frac, 1e-9) * (1 - frac)
            console.print(f"{description}: {state['done']}/{total} {info} [{elapsed:.0f}s, ETA {eta:.0f}s]")
            while state["next"] <= frac:
                state["next"] += 0.1

    return advance
