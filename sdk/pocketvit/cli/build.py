"""`pocketvit build` and `pocketvit validate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pocketvit.cli.common import DebugOpt, VerboseOpt, err_console, handle_errors

RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file (see recipes/ and the README's recipe reference).")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a recipe value, e.g. --set distill.epochs=3 (repeatable; value parsed as YAML)."),
]


@handle_errors
def build(
    recipe: RecipeArg,
    out: Annotated[Path | None, typer.Option("--out", help="Build directory (default: runs/<recipe name>).")] = None,
    set_: SetOpt = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore finished stages and recompute everything.")] = False,
    until: Annotated[
        str | None, typer.Option("--until", help="Stop after this stage (teacher, teacher_cache, cache_bench, distill, baseline, exits).")
    ] = None,
    debug: DebugOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run a recipe end to end: teacher, cache, distill, export, verify on each runtime, bundle + report.

    Finished stages are reused; Ctrl-C and the same command again continues where it stopped.
    """
    from pocketvit.recipe import load_recipe

    r = load_recipe(recipe, set_ or [])  # validate before importing torch: bad recipes fail instantly
    from pocketvit.pipeline.classify import default_out_dir, run_build
    from pocketvit.runtime.io import writable_dir

    out_dir = writable_dir(out or default_out_dir(r), "--out")  # a file or a read-only place: one message, exit 9
    report = run_build(r, recipe, out_dir, fresh=fresh, until=until)
    from pocketvit.scale import current

    if report.get("rank") or not current().is_zero:  # a helper rank of a multi-process run: rank 0 reports
        return
    if until:
        from pocketvit.runtime.io import write_json

        write_json(out_dir / f"report-until-{until}.json", report)  # what ran so far (teacher figures, warnings)
        err_console.print(f"\n[bold green]stopped after {until}[/bold green]: stages in {out_dir / 'stages'}, "
                          f"report {out_dir / f'report-until-{until}.json'}")
        if report.get("teacher_weights"):
            err_console.print(f"  teacher weights: {report['teacher_weights']}")
        if report.get("distill", {}).get("cache_speedup"):
            d = report["distill"]
            err_console.print(f"  cache speed-up {d['cache_speedup']:.2f}x ({d['cache_step_seconds'] * 1e3:.0f} ms/step "
                              f"from the cache, {d['online_step_seconds'] * 1e3:.0f} ms/step with the teacher online)")
        return
    err_console.print(f"\n[bold green]done[/bold green]: bundle {out_dir / 'bundle'}, report {out_dir / 'report.md'}")
    for target, m in report["targets"].items():
        v = m.get("verify") or {}
        if v.get("status") == "fail":  # verify.on_mismatch: drop or keep (fail stopped the build)
            err_console.print(f"  {target}: [bold red]verify failed[/bold red] ({'; '.join(v['failures'])}) — "
                              f"{v.get('action')}", highlight=False)
            if "dropped" in (v.get("action") or ""):
                continue
        top1 = m.get("test_top1")
        if top1 is None and m.get("teacher_agreement") is not None:  # label-free data (distill/pretrained.py)
            err_console.print(f"  {target}: teacher agreement {m['teacher_agreement']:.4f}")
            continue
        err_console.print(f"  {target}: test top-1 " + ("n/a (not executable here)" if top1 is None else f"{top1:.4f}"))
        if m.get("heldout_top1") is not None:  # clip builds: zero-shot on the classes held out of training
            err_console.print(f"  {target}: zero-shot top-1 on held-out classes {m['heldout_top1']:.4f}")


@handle_errors
def validate(
    recipes: Annotated[list[Path], typer.Argument(help="One or more recipe files to check.")],
    set_: SetOpt = None,
    debug: DebugOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Check recipes without running them: every problem is reported at once, with its key path. For a
    classification recipe whose data is on this machine, also say how many optimizer steps each training stage
    will take (counted from the files, without loading an image)."""
    from pocketvit.errors import PocketVitError, RecipeError
    from pocketvit.recipe import load_recipe

    failed = []
    for path in recipes:
        try:
            r = load_recipe(path, set_ or [])
            err_console.print(f"[green]ok[/green] {path}")
        except RecipeError as e:
            failed.append(str(e))
            continue
        if r.clip is not None:
            continue  # CLIP builds train differently
        if str(r.data.root).startswith("pocketvit:"):
            from pocketvit.data.builtin import locate

            if not locate(r.data.root)[1]:
                err_console.print(f"  [dim](training plan once {r.data.root} is written: the first build does it)[/dim]")
                continue
        from pocketvit.pipeline.plan import describe_plan

        try:
            for line in describe_plan(r):
                err_console.print(f"  {line}", highlight=False)
        except PocketVitError as e:
            err_console.print(f"  [dim](no training plan: {e})[/dim]")
    if failed:
        raise RecipeError("\n".join(failed))
