"""`pocketvit predict`: top-k labels for image files, with the bundle's own preprocessing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pocketvit.cli.common import PROMPTS_HELP, DebugOpt, VerboseOpt, err_console, handle_errors

BundleArg = Annotated[Path, typer.Argument(help="Bundle folder or .zip (e.g. runs/fashion-mnist/bundle).")]
TargetOpt = Annotated[
    str | None, typer.Option("--target", "-t", help="Target to run (executorch, litert, onnx, ...); default: first available.")
]


@handle_errors
def predict(
    bundle: BundleArg,
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG, JPEG, ...).")],
    target: TargetOpt = None,
    topk: Annotated[int, typer.Option("--topk", "-k", min=1, help="How many labels to print per image.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per image.")] = False,
    no_exits: Annotated[bool, typer.Option("--no-exits", help="Run the full model even when the bundle has early exits.")] = False,
    prompts: Annotated[str | None, typer.Option("--prompts", help=PROMPTS_HELP)] = None,
    debug: DebugOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Classify image files with a bundle and print the top-k labels and scores."""
    from pocketvit.cli.common import debug_enabled, split_prompts
    from pocketvit.errors import InputError
    from pocketvit.runtime import load

    predictor = load(bundle, target=target, use_exits=not no_exits)
    for fb in predictor.fallbacks:  # said once, on stderr (never in the JSON lines)
        err_console.print(f"[yellow]note[/yellow]: {predictor.target}: fallback — {fb}", highlight=False)
    if prompts:
        predictor.use_prompts(split_prompts(prompts))
    failed = 0
    for path in images:
        try:
            r = predictor.predict(str(path), topk=topk)
        except InputError as e:  # this image: one line, then the next one
            if debug_enabled():
                raise
            failed += 1
            err_console.print(f"[bold red]error:[/bold red] {e}", highlight=False, soft_wrap=True)
            continue
        if as_json:
            print(json.dumps({"image": str(path), "label": r.label, "score": r.score, "topk": r.topk,
                              "latency_ms": r.latency_ms, "target": predictor.target, "exit": r.exit}))
        else:
            tops = ", ".join(f"{lab} {score:.3f}" for lab, score in r.topk)
            taken = f", exit {r.exit}" if r.exit else (", final" if predictor.exits else "")
            print(f"{path}: {tops}  [{predictor.target}, {r.latency_ms:.2f} ms{taken}]")
    if failed:
        raise typer.Exit(InputError.exit_code)  # each one was said above
