"""`pocketvit bench`: latency of every runtime of a bundle (and eager torch), in one interleaved run."""

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
MethodOpt = Annotated[
    str,
    typer.Option("--method", help="auto (default): isolated with more than one thread, interleaved with one; "
                 "interleaved: one process, every runner called once per round in a random order; isolated: each "
                 "runner in its own process, asked for blocks of calls in turn (no runtime's spinning threads "
                 "slow down the next one)."),
]
TargetsOpt = Annotated[
    list[str] | None,
    typer.Option("--target", "-t", help="Target to time (executorch, onnx, litert, ...; repeatable). Default: all."),
]


def _f(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def print_tables(result: dict, console) -> None:
    from rich.table import Table

    from pocketvit.bench.latency import display_name

    peak = result["machine"]["peak"]
    gf = result["model"]["gflops"]
    console.print(
        f"[bold]{result['name']}[/bold]: batch 1, {result['threads']} thread(s), {result['runs']} calls per runner "
        f"({result['method']}) after {result['warmup']} warm-up; model {_f(gf, '.4g')} GFLOPs; machine peak "
        f"{peak['gflops_per_s']:.1f} GFLOP/s ({peak['method']})",
        highlight=False,
    )
    ref = result["reference"]
    table = Table(title="latency per runtime")
    for col, just in [("runtime", "left"), ("precision", "left"), ("median ms", "right"), ("p90 ms", "right"),
                      (f"× {display_name(ref, result['results'][ref])}" if ref else "× ONNX Runtime", "right"),
                      ("GFLOP/s", "right"), ("% of peak", "right")]:
        table.add_column(col, justify=just)
    rows = sorted(result["results"].items(), key=lambda kv: kv[1].get("median_ms", float("inf")))
    for name, e in rows:
        if "median_ms" not in e:
            table.add_row(display_name(name, e), str(e["precision"]), "—", "—", "—", "—", f"[yellow]{e.get('note', '')}[/yellow]")
            continue
        frac = e.get("fraction_of_peak")
        table.add_row(display_name(name, e), str(e["precision"]), f"{e['median_ms']:.3f}", f"{e['p90_ms']:.3f}",
                      _f(e.get("ratio_to_onnx"), ".2f"), _f(e.get("achieved_gflops_per_s"), ".2f"),
                      "—" if frac is None else f"{100 * frac:.1f}%")
    console.print(table)
    wrapper = result["wrapper_overhead"]["targets"]
    if wrapper:
        wt = Table(title=f"pocketvit.runtime wrapper: Predictor.predict vs backend.run "
                         f"({result['wrapper_overhead']['image']})")
        for col in ("target", "predict ms", "backend.run ms", "overhead ms", "overhead % of inference"):
            wt.add_column(col, justify="left" if col == "target" else "right")
        for t, w in wrapper.items():
            wt.add_row(t, f"{w['predict_median_ms']:.3f}", f"{w['run_median_ms']:.3f}", f"{w['overhead_ms']:.3f}",
                       _f(w["overhead_pct"], ".1f") + ("%" if w["overhead_pct"] is not None else ""))
        console.print(wt)
    for n in result["notes"]:
        console.print(f"[yellow]note[/yellow]: {n}", highlight=False)


def _ms(e: dict | None, key: str) -> str:
    return "—" if not e or key not in e else f"{e[key]:.3f}"


def print_device_tables(result: dict, console) -> None:
    """The device's figures beside this machine's, one row per target, under a line naming the device."""
    from rich.table import Table

    from pocketvit.bench.latency import display_name

    dev, local = result["device_bench"], result.get("local")
    d = result["device"]
    mods = ", ".join(f"{m} {v}" for m, v in d["modules"].items() if v and m != "numpy")
    console.print(f"[bold]device[/bold] {d['address']}: {d['label']}; numpy {d['modules'].get('numpy')}"
                  + (f", {mods}" if mods else "") + (f" [bold yellow]EMULATED[/bold yellow]: {d['emulated']}"
                                                       if d.get("emulated") else ""), highlight=False)
    here = (local or {}).get("machine") or {}
    console.print(f"[bold]{result['name']}[/bold]: batch 1, {result['runs']} calls per runner after {result['warmup']} "
                  f"warm-up; device {dev['threads']} thread(s), {dev['method']}"
                  + (f"; this machine ({here.get('machine')}, {here.get('cpu_count')} CPUs) {local['threads']} "
                     f"thread(s), {local['method']}" if local else ""), highlight=False)
    who = "device (emulated)" if d.get("emulated") else "device"
    table = Table(title=f"latency per runtime: {d.get('model')} vs this machine")
    for col, just in [("runtime", "left"), ("precision", "left"), (f"{who} median ms", "right"),
                      (f"{who} p90 ms", "right"), ("here median ms", "right"), ("here p90 ms", "right"),
                      ("device ÷ here", "right"), ("device runtime", "left")]:
        table.add_column(col, justify=just)
    for t, e in dev["results"].items():
        mine = (local or {}).get("results", {}).get(t)
        ratio = (f"{e['median_ms'] / mine['median_ms']:.2f}" if "median_ms" in e and mine and "median_ms" in mine
                 and not d.get("emulated") else "—")  # an emulator's time over a CPU's is no figure of merit
        what = e.get("module") or ""
        if "median_ms" not in e:
            what = f"[yellow]{e.get('note') or ''}[/yellow]"
        table.add_row(display_name(t, e), str(e["precision"]), _ms(e, "median_ms"), _ms(e, "p90_ms"),
                      _ms(mine, "median_ms"), _ms(mine, "p90_ms"), ratio, what)
    console.print(table)
    for n in result["notes"]:
        console.print(f"[yellow]note[/yellow]: {n}", highlight=False)


def _method(method: str) -> str:
    from pocketvit.bench.latency import choose_method

    try:
        choose_method(method, 1)  # the one check of the name; the thread count is resolved later
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--method") from None
    return method


@handle_errors
def bench(
    bundle: BundleArg,
    target: TargetsOpt = None,
    runs: Annotated[int, typer.Option("--runs", "-n", min=50, help="Timed rounds per runtime (at least 50).")] = 100,
    threads: Annotated[
        int | None, typer.Option("--threads", "-j", min=1, help="Threads for every runtime and the peak matmul (default: min(4, CPUs)).")
    ] = None,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed warm-up calls per runtime.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout (tables go to stderr).")] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the JSON result to this file.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a bar chart of the latencies (PNG) here.")] = None,
    no_exits: Annotated[bool, typer.Option("--no-exits", help="predict:<target> runs the full model even when the bundle has early exits.")] = False,
    method: MethodOpt = "auto",
    allow_unrun: Annotated[
        bool, typer.Option("--allow-unrun", help="Go on (timing eager torch alone) when no target of the bundle can "
                           "run here; without it that is exit 8.")
    ] = False,
    device: DeviceOpt = None,
    device_python: DevicePythonOpt = "python3",
    device_dir: DeviceDirOpt = None,
    ssh_config: SshConfigOpt = None,
    no_local: Annotated[bool, typer.Option("--no-local", help="With --device: do not also time this machine.")] = False,
    debug: DebugOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Time eager torch and every runtime of a bundle, batch 1, in one run (interleaved, or isolated processes).

    Prints median / p90 latency, the ratio to ONNX Runtime, achieved GFLOP/s against this machine's measured fp32 peak, and the pocketvit.runtime wrapper's overhead over the raw runtime call.

    With --device ssh://USER@HOST the same timing runs on that device (torch-free: numpy and its runtimes), next to this machine's figures.
    """
    from pocketvit.bench._common import table_console
    from pocketvit.runtime.io import writable_file

    for path, flag in ((out, "--out"), (plot, "--plot")):  # before minutes of timing
        if path is not None:
            writable_file(path, flag)
    console = table_console(stderr=as_json)
    if device:
        from pocketvit.bench.on_device import bench_on_device

        err_console.print(f"benchmarking {bundle} on {device} ({runs} rounds)…", highlight=False)
        result = bench_on_device(bundle, device, target or None, runs=runs, threads=threads, warmup=warmup,
                                 exits=not no_exits, method=_method(method), ssh_config=ssh_config,
                                 python=device_python, device_dir=device_dir, local=not no_local,
                                 say=lambda m: err_console.print(m, highlight=False))
    else:
        from pocketvit.bench.latency import bench_bundle

        err_console.print(f"benchmarking {bundle} ({runs} rounds)…", highlight=False)
        result = bench_bundle(bundle, target or None, runs=runs, threads=threads, warmup=warmup, exits=not no_exits,
                              method=_method(method), allow_unrun=allow_unrun)
    if plot is not None:
        from pocketvit.bench.plot import bench_plot, device_plot

        result["plot"] = str((device_plot if device else bench_plot)(result, plot))
    if out is not None:
        from pocketvit.runtime.io import write_json

        write_json(out, result)
    (print_device_tables if device else print_tables)(result, console)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        if plot is not None:
            err_console.print(f"plot: {plot}", highlight=False)
        if out is not None:
            err_console.print(f"json: {out}", highlight=False)


@handle_errors
def bench_zoo(
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="timm model name (repeatable). Default: the zoo in bench/zoo.py "
                     "(DeiT-tiny, TinyViT-5M, FastViT-T8, FastViT-MCi0, ConvNeXt-atto, MobileNetV3-large, "
                     "EfficientNet-B0, ResNet-18)."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for zoo.json, zoo.md, zoo.png and the exported files.")]
    = Path("runs/bench-zoo"),
    size: Annotated[int, typer.Option("--size", min=16, help="Input height = width.")] = 224,
    runs: Annotated[int, typer.Option("--runs", min=5, help="Interleaved timing rounds per model.")] = 50,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Threads for every runtime and eager torch.")] = 2,
    int8: Annotated[bool, typer.Option("--int8/--no-int8", help="Also export and time ExecuTorch and LiteRT int8.")]
    = True,
    method: MethodOpt = "auto",
    debug: DebugOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Raw toolchain exports vs pocketvit's on ImageNet-size timm models: eager torch, ONNX Runtime, ExecuTorch
    (raw and with pocketvit's rewrites), LiteRT, ExecuTorch/LiteRT int8, timed in one interleaved run per model.

    Random weights (BatchNorm re-estimated): speed does not depend on them; fp32 parity vs eager is checked on
    the same 16 inputs. Writes OUT/zoo.json, OUT/zoo.md (table) and OUT/zoo.png (latency relative to ONNX
    Runtime). A benchmark, not a test: run it on a quiet machine and compare the ratios.
    """
    from pocketvit.bench.zoo import ZOO
    from pocketvit.bench.zoo import bench_zoo as run
    from pocketvit.errors import MissingExtraError
    from pocketvit.progress import log

    try:
        import timm  # noqa: F401
    except ImportError:
        raise MissingExtraError("bench-zoo needs timm: pip install 'pocketvit[train]'") from None
    run(list(model or ZOO), out, size=size, runs=runs, threads=threads, int8=int8, say=log, method=_method(method))
    err_console.print(f"[bold green]done[/bold green]: {out / 'zoo.md'} {out / 'zoo.json'} {out / 'zoo.png'}")
    print((out / "zoo.md").read_text())
