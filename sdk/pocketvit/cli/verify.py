"""`pocketvit verify`: each target of a bundle on its own runtime against eager torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pocketvit.cli.common import (
    DebugOpt,
    DeviceDirOpt,
    DeviceOpt,
    DevicePythonOpt,
    SshConfigOpt,
    VerboseOpt,
    err_console,
    handle_errors,
)

BundleArg = Annotated[Path, typer.Argument(help="Bundle folder or .zip (e.g. runs/fashion-mnist/bundle).")]
TargetsOpt = Annotated[
    list[str] | None,
    typer.Option("--target", "-t", help="Target to check (executorch, onnx, litert, ...; repeatable). Default: all."),
]


def _fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def _tol_text(tol: dict | None) -> str:
    if not tol:
        return ""
    parts = []
    if tol.get("max_abs_diff") is not None:
        parts.append(f"|Δ|≤{tol['max_abs_diff']:g}")
    parts.append(f"cos≥{tol['cosine']:g}")
    parts.append(f"top1≥{tol['top1']:g}")
    return " ".join(parts)


def print_table(result: dict) -> None:
    from rich.table import Table

    from pocketvit.bench._common import table_console

    where = f" on {result['device']['address']}" if result.get("device") else ""
    table = Table(title=f"{result['name']}: runtime{where} vs eager torch, {result['inputs']} inputs (seed {result['seed']})")
    for col, just in [("target", "left"), ("runtime", "left"), ("precision", "left"), ("max |Δ|", "right"),
                      ("cosine (min)", "right"), ("top-1 agree", "right"), ("tolerance", "left"), ("result", "left")]:
        table.add_column(col, justify=just)
    for r in result["targets"].values():
        if r["status"] == "not run":
            table.add_row(r["target"], r["runtime"], r["precision"], "—", "—", "—", "", f"[yellow]{r['note']}[/yellow]")
            continue
        status = "[green]pass[/green]" if r["status"] == "pass" else "[bold red]FAIL[/bold red]: " + "; ".join(r["failures"])
        table.add_row(r["target"], r["runtime"], r["precision"], _fmt(r["max_abs_diff"], ".2e"),
                      _fmt(r["cosine"], ".6f"), _fmt(r["top1_agreement"], ".4f"), _tol_text(r["tolerance"]), status)
    table_console().print(table)
    print_fallbacks(result["targets"])


def print_fallbacks(rows: dict) -> None:
    """Each fallback a runtime took (provider, threads, delegate), said once, on stderr."""
    for r in rows.values():
        for fb in (r.get("runtime_info") or {}).get("fallbacks", []):
            err_console.print(f"[yellow]note[/yellow]: {r['target']}: fallback — {fb}", highlight=False)


def print_device(result: dict) -> None:
    """The device, and each target's outputs there against this machine's runtime on the same file."""
    from rich.table import Table

    from pocketvit.bench._common import table_console

    console = table_console()
    d = result["device"]
    console.print(f"[bold]device[/bold] {d['address']}: {d['label']}"
                  + (f" [bold yellow]EMULATED[/bold yellow]: {d['emulated']}" if d.get("emulated") else ""),
                  highlight=False)
    if result["vs_local"]:
        table = Table(title="the device's outputs vs this machine's runtime on the same file")
        for col in ("target", "device runtime", "here", "max |Δ|", "top-1 agree"):
            table.add_column(col, justify="right" if col in ("max |Δ|", "top-1 agree") else "left")
        for t, v in result["vs_local"].items():
            if "note" in v:
                table.add_row(t, "", f"[yellow]{v['note']}[/yellow]", "—", "—")
            else:
                table.add_row(t, str(v.get("device_module")), str(v.get("module")), f"{v['max_abs_diff']:.2e}",
                              f"{v['top1_agreement']:.4f}")
        console.print(table)
    diff = result.get("device_preprocessing_max_pixel_diff")
    if diff is not None:
        console.print(f"the bundle's preprocessing on the device vs here (colour, resize, crop): max pixel "
                      f"difference {diff}", highlight=False)


@handle_errors
def verify(
    bundle: BundleArg,
    target: TargetsOpt = None,
    inputs: Annotated[int, typer.Option("--inputs", "-n", min=1, help="How many seeded random images to compare on.")] = 64,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random input images.")] = 0,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="Runtime threads (default: the runtime's own).")] = None,
    max_abs_diff: Annotated[
        float | None, typer.Option("--max-abs-diff", help="fp32 targets: largest allowed |runtime - eager| (default 1e-3).")
    ] = None,
    cosine: Annotated[float | None, typer.Option("--cosine", help="fp32 targets: smallest allowed per-image cosine (default 0.999).")] = None,
    top1: Annotated[float | None, typer.Option("--top1", help="fp32 targets: smallest allowed top-1 agreement (default 0.99).")] = None,
    int8_cosine: Annotated[float | None, typer.Option("--int8-cosine", help="int8 targets: smallest allowed cosine (default 0.98).")] = None,
    int8_top1: Annotated[float | None, typer.Option("--int8-top1", help="int8 targets: smallest allowed top-1 agreement (default 0.9).")] = None,
    int8_max_abs_diff: Annotated[
        float | None, typer.Option("--int8-max-abs-diff", help="int8 targets: largest allowed |runtime - eager| (default: not checked).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of a table.")] = False,
    no_exits: Annotated[
        bool, typer.Option("--no-exits", help="Skip the early-exit program rows ('<target> exits': the segment chain vs the eager exit model).")
    ] = False,
    allow_unrun: Annotated[
        bool, typer.Option("--allow-unrun", help="Exit 0 even when no target could run here (e.g. a Core ML-only bundle "
                           "on Linux); without it that is exit 8, since nothing was verified.")
    ] = False,
    device: DeviceOpt = None,
    device_python: DevicePythonOpt = "python3",
    device_dir: DeviceDirOpt = None,
    ssh_config: SshConfigOpt = None,
    debug: DebugOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Check every target of a bundle against eager torch on the same preprocessed inputs.

    Every file's sha256 is checked first. Seeded random images go through the bundle's own preprocessing, then each target's runtime and the eager model rebuilt from the bundle's reference weights.

    Exits 6 when a target misses its tolerance (fp32: max |Δ| 1e-3, cosine 0.999, top-1 0.99; int8: cosine 0.98, top-1 0.9).

    Core ML is reported as converted, not run, off macOS; when no target could run at all the command exits 8 (unless --allow-unrun).

    With --device ssh://USER@HOST the targets run on that device (eager torch stays here), and each is also compared with this machine's runtime on the same file.
    """
    from pocketvit.bench.parity import raise_on_failure, verify_bundle

    overrides = {
        "fp32": {"max_abs_diff": max_abs_diff, "cosine": cosine, "top1": top1},
        "int8": {"max_abs_diff": int8_max_abs_diff, "cosine": int8_cosine, "top1": int8_top1},
    }
    if device:
        from pocketvit.bench.on_device import verify_on_device

        result = verify_on_device(bundle, device, target or None, n_inputs=inputs, seed=seed,
                                  tolerance_overrides=overrides, threads=threads, ssh_config=ssh_config,
                                  python=device_python, device_dir=device_dir,
                                  say=lambda m: err_console.print(m, highlight=False))
    else:
        result = verify_bundle(bundle, target or None, n_inputs=inputs, seed=seed, tolerance_overrides=overrides,
                               threads=threads, exits=not no_exits)
    if as_json:
        print(json.dumps(result, indent=2))
        print_fallbacks(result["targets"])
    else:
        if device:
            print_device(result)
        print_table(result)
        for n in result.get("notes", []):
            err_console.print(f"[yellow]note[/yellow]: {n}", highlight=False)
    raise_on_failure(result, allow_unrun=allow_unrun)
    if not as_json:
        rows = result["targets"].values()
        ran = sum(r["status"] == "pass" for r in rows)
        unrun = [r["target"] for r in rows if r["status"] == "not run"]
        tail = f"; not run here: {', '.join(unrun)}" if unrun else ""
        if ran:
            err_console.print(f"[bold green]ok[/bold green]: {ran} target(s) match eager torch within tolerance{tail}")
        else:
            err_console.print(f"[yellow]nothing verified[/yellow] (--allow-unrun){tail}")
