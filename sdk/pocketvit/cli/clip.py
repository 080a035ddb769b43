"""`pocketvit distill-text`: TinyCLIP weight inheritance + affinity mimicking on a text encoder (clip/text_distill.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pocketvit.cli.common import DebugOpt, VerboseOpt, err_console, handle_errors


@handle_errors
def distill_text(
    teacher: Annotated[str, typer.Option("--teacher", help="minilm (all-MiniLM-L6-v2) or hf:/path/to/folder.")] = "minilm",
    layers: Annotated[int, typer.Option("--layers", min=1, help="Layers the student keeps (evenly spaced).")] = 3,
    heads: Annotated[int | None, typer.Option("--heads", min=1, help="Leading attention heads kept (default all).")] = None,
    intermediate: Annotated[int | None, typer.Option("--intermediate", min=1, help="Leading FFN channels kept.")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 3,
    batch_size: Annotated[int, typer.Option("--batch-size", min=2)] = 64,
    lr: Annotated[float, typer.Option("--lr", min=0.0)] = 3e-4,
    no_random_baseline: Annotated[bool, typer.Option("--no-random-baseline", help="Skip the randomly initialised student.")] = False,
    train_limit: Annotated[int | None, typer.Option("--train-limit", min=8, help="Use only this many training sentences.")] = None,
    heldout_limit: Annotated[int | None, typer.Option("--heldout-limit", min=8, help="Use only this many held-out sentences.")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out: Annotated[Path, typer.Option("--out", help="Output folder: student/ (an hf: folder) and text_student.json.")] = Path("runs/text-student"),
    debug: DebugOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Inherit a smaller text encoder from the teacher (TinyCLIP: evenly spaced layers, leading heads/channels),
    distil it on real sentences (affinity mimicking + cosine), and report the cosine between student and teacher
    embeddings on held-out sentences before and after, next to a randomly initialised student of the same shape."""
    from pocketvit.clip.text_distill import TextDistillConfig
    from pocketvit.clip.text_distill import distill_text as run

    cfg = TextDistillConfig(teacher=teacher, layers=layers, heads=heads, intermediate=intermediate, epochs=epochs,
                            batch_size=batch_size, lr=lr, random_baseline=not no_random_baseline,
                            train_limit=train_limit, heldout_limit=heldout_limit, seed=seed)
    from pocketvit.runtime.io import writable_dir

    report = run(cfg, writable_dir(out, "--out"))
    for init in ("inherited", "random"):
        if init in report:
            m = report[init]
            err_console.print(f"{init:9s} student {m['params'] / 1e6:5.1f}M params: held-out cosine to the teacher "
                              f"{m['heldout_cosine_before']:.4f} -> {m['heldout_cosine_after']:.4f}")
    err_console.print(f"[bold green]done[/bold green]: {out / 'text_student.json'}, student encoder {out / 'student'}")
