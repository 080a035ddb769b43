"""`pocketvit zoo-coverage`: every target on a zoo of timm families, as a coverage matrix (`make test-zoo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pocketvit.cli.common import err_console, handle_errors


@handle_errors
def zoo_coverage(
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="timm model name (repeatable). Default: the zoo in "
                     "pipeline/zoo_coverage.py, the smallest variant of each family (`--list` shows it)."),
    ] = None,
    size: Annotated[
        int | None,
        typer.Option("--size", min=16, help="Input height = width for every model (e.g. 224). Default: each model's "
                     "small size (64, or the smallest it accepts).", show_default=False),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for zoo-coverage.json and zoo-coverage.md; rows already "
                                      "there are kept, so a stopped run continues.")] = Path("runs/zoo-coverage"),
    page: Annotated[Path | None, typer.Option("--page", help="A markdown page whose <!-- zoo-coverage:start/end --> "
                                              "section gets the matrix (docs/zoo.md).")] = None,
    target: Annotated[
        list[str] | None,
        typer.Option("--target", "-t", help="Matrix columns to check (repeatable or comma-separated): executorch, "
                     "litert, onnx, coreml, litert-dropin, coreml-dropin, executorch-int8, litert-int8, onnx-int8, "
                     "coreml-int8. Default: all. Cells already checked are kept, so passes over different columns "
                     "add up."),
    ] = None,
    int8: Annotated[bool, typer.Option("--int8/--no-int8", help="Include the int8 columns (random calibration "
                                       "images: checks the path, not accuracy).")] = True,
    timeout: Annotated[float, typer.Option("--timeout", min=60, help="Seconds one model may take (all its targets "
                                           "and checks); past it the row says so.")] = 1800,
    fresh: Annotated[bool, typer.Option("--fresh", help="Redo the models named even if their rows exist.")] = False,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Threads for torch and the runtimes.")] = 2,
    list_models: Annotated[bool, typer.Option("--list", help="Print the zoo (family, model, small size) and exit.")]
    = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
) -> None:
    """Export every model of the zoo to ExecuTorch, LiteRT, ONNX and Core ML (+ the LiteRT and Core ML drop-in files
    and int8 for each) through `pocketvit export`'s own path, check each file on its runtime against eager torch
    (Core ML: conversion + spec check), and write the coverage matrix: model x target, ok or the failure's reason,
    the toolchain's known issue and the targets that worked instead.

    Each model runs in its own process (random weights, BatchNorm statistics re-estimated); its row is written as it
    finishes, so Ctrl-C and the same command continue. The evidence is OUT/zoo-coverage.json (+ .md).
    """
    from pocketvit.pipeline.zoo_coverage import ZOO, run_coverage
    from pocketvit.progress import log

    if list_models:
        for m in ZOO:
            print(f"{m.family:22s} {m.name:32s} {m.small}")
        return

    from pocketvit.errors import RecipeError
    from pocketvit.pipeline.zoo_coverage import COLUMNS, INT8

    columns = [c.strip() for v in (target or list(COLUMNS)) for c in v.split(",") if c.strip()]
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise RecipeError(f"--target {', '.join(unknown)}: the matrix's columns are {', '.join(COLUMNS)}")
    columns = [c for c in columns if int8 or c not in INT8]
    names = list(model or [m.name for m in ZOO])
    rows = run_coverage(names, out, size=size, targets=columns, timeout=timeout, fresh=fresh, page=page,
                        threads=threads, say=log)
    err_console.print(f"[bold green]done[/bold green]: {len(rows)} row(s) in {out / 'zoo-coverage.json'}")
    print((out / "zoo-coverage.md").read_text())
