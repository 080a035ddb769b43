"""`pocketvit export`: one model (timm, EfficientNet-Lite, a checkpoint or a build) → one bundle, every target."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer

from pocketvit.cli.common import DebugOpt, VerboseOpt, err_console, handle_errors
from pocketvit.export.rewrites import rewrite_names

TARGET_CHOICES = ("executorch", "litert", "onnx", "coreml")
ALIASES = {"tflite": "litert", "tflite-runtime": "litert", "pte": "executorch", "xnnpack": "executorch",
           "mlpackage": "coreml", "mlmodel": "coreml", "onnxruntime": "onnx"}

ModelArg = Annotated[
    str | None,
    typer.Argument(
        help="timm:NAME, hf:FOLDER (a transformers image classifier saved with save_pretrained), "
        "efficientnet-lite:lite0, pocketvit-resnet / pocketvit-tinyvit (with --checkpoint), a checkpoint file "
        "(with --arch), or a build directory (runs/NAME).",
        show_default=False,
    ),
]


def _targets(values: list[str] | None) -> list[str]:
    from pocketvit.errors import ExportError

    if not values:
        raise ExportError("Say which runtime(s) to export for: --target executorch|litert|onnx|coreml (repeatable), "
                          "or --target all.")
    chosen: list[str] = []
    for v in values:
        for t in (p.strip() for p in v.split(",")):
            names = list(TARGET_CHOICES) if t == "all" else [t]
            for n in names:
                if n not in TARGET_CHOICES:
                    alias = ALIASES.get(n.lower())
                    hint = f" ({n} files come from --target {alias})" if alias else ""
                    raise ExportError(f"Unknown export target '{n}'{hint}. Choose from: {', '.join(TARGET_CHOICES)} "
                                      "(or all).")
                if n not in chosen:
                    chosen.append(n)
    return chosen


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


def print_models(as_json: bool) -> None:
    from pocketvit.models.sources import KNOWN_MODELS

    if as_json:
        print(json.dumps([{"name": m.name, "kind": m.kind, "status": m.status, "note": m.note} for m in KNOWN_MODELS],
                         indent=2))
        return
    from rich.table import Table

    from pocketvit.bench._common import table_console

    table = Table(title="models known to work with `pocketvit export` (status as the test suite measured it)")
    table.add_column("model")
    for t in TARGET_CHOICES:
        table.add_column(t)
    table.add_column("note")
    for m in KNOWN_MODELS:
        cells = [m.status[t] for t in TARGET_CHOICES]
        styled = [f"[green]{c}[/green]" if c == "ok" else f"[red]{c}[/red]" if c.startswith("fails")
                  else f"[dim]{c}[/dim]" if c == "untested" else c for c in cells]
        table.add_row(m.name, *styled, m.note)
    console = table_console()
    console.print(table)
    console.print("timm models at 64x64 with random weights; any other timm model can be tried as timm:NAME, and "
                  "docs/zoo.md has every target on 50-odd more families (`pocketvit zoo-coverage`). Core ML converts "
                  "on Linux but runs only on macOS/iOS.", highlight=False)


def print_result(result: dict) -> None:
    from rich.table import Table

    from pocketvit.bench._common import table_console

    console = table_console()
    prov = result["provenance"]
    spec = result["input"]
    console.print(f"[bold]{result['name']}[/bold]: {prov['description']}", highlight=False)
    console.print(f"  weights: {prov['weights']}", highlight=False)
    console.print(f"  licence: {prov['license']}", highlight=False)
    console.print(f"  input: {spec['channels']}x{spec['height']}x{spec['width']} {spec['color_order']}, resize "
                  f"{spec.get('resize')}, crop {spec.get('crop')}, mean {spec.get('mean')}, std {spec.get('std')}",
                  highlight=False)
    for n in result.get("notes", []):
        console.print(f"  [yellow]note[/yellow]: {n}", highlight=False)
    table = Table(title=f"bundle {result['bundle']}: each file on its runtime vs eager torch "
                        f"({result['parity_inputs']} inputs), batch-1 latency")
    for col, just in [("target", "left"), ("file", "left"), ("KB", "right"), ("max |Δ|", "right"),
                      ("cosine", "right"), ("top-1 agree", "right"), ("median ms", "right"), ("result", "left")]:
        table.add_column(col, justify=just)
    for t, r in result["targets"].items():
        if r["status"] == "failed":
            table.add_row(t, "—", "—", "—", "—", "—", "—", "[bold red]export failed[/bold red]")
            continue
        p = r.get("parity") or {}
        lat = r.get("latency_ms") or {}
        status = {"ok": "[green]ok[/green]", "parity failed": "[bold red]parity FAIL[/bold red]: "
                  + "; ".join(p.get("failures") or []), "not run": f"[yellow]{r.get('note') or 'not run'}[/yellow]"}
        table.add_row(t, r["file"], f"{r['bytes'] / 1024:.0f}", _f(p.get("max_abs_diff"), ".2e"),
                      _f(p.get("cosine"), ".6f"), _f(p.get("top1_agreement"), ".4f"), _f(lat.get("median"), ".2f"),
                      status[r["status"]])
    console.print(table)
    console.print("[bold]what each backend took[/bold]")
    for t, r in result["targets"].items():
        if r["status"] == "failed":
            console.print(f"  {t}: [red]export failed[/red] — {r['error'].splitlines()[0]}", highlight=False)
        else:
            console.print(f"  {t}: {r['summary']}", highlight=False)
            for fb in (r.get("runtime_info") or {}).get("fallbacks", []):
                console.print(f"  {t}: [yellow]fallback[/yellow] — {fb}", highlight=False)
    lat = next((r["latency_ms"] for r in result["targets"].values() if r.get("latency_ms")), None)
    if lat:
        console.print(f"latency: batch 1, {lat['method']} method, {lat['threads']} thread(s), median of {lat['runs']} "
                      "runs (as `pocketvit bench`)", highlight=False)


def _f(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


@handle_errors
def export(
    model: ModelArg = None,
    target: Annotated[
        list[str] | None,
        typer.Option("--target", "-t", help="executorch, litert, onnx, coreml (repeatable, or comma-separated), or all."),
    ] = None,
    input_size: Annotated[
        tuple[int, int] | None,
        typer.Option("--input-size", help="Input height and width (default: the model's own, e.g. 224 224).",
                     show_default=False),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="Weights as .safetensors (a .pth/.pt only if torch.load(weights_only=True) "
                     "reads it; nothing is unpickled). Without it timm models are randomly initialised."),
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option("--arch", help="Architecture of a checkpoint file given as MODEL (pocketvit-tinyvit, "
                     "pocketvit-resnet, timm:NAME, efficientnet-lite:lite0)."),
    ] = None,
    num_classes: Annotated[int | None, typer.Option("--num-classes", min=1, help="Classifier outputs (default: the model's own).")] = None,
    in_chans: Annotated[int | None, typer.Option("--in-chans", min=1, help="Input channels (default 3).")] = None,
    labels: Annotated[Path | None, typer.Option("--labels", help="Class names, one per line (default: ImageNet names for 1000-class models, else class_N).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Bundle folder to write (default: exports/<model name>).")] = None,
    inputs: Annotated[int, typer.Option("--inputs", "-n", min=1, help="Seeded random images for the parity check after export.")] = 16,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="Runtime threads for the checks (default: up to 4).")] = None,
    no_rewrite: Annotated[
        list[str] | None,
        typer.Option("--no-rewrite", help="Switch off an export rewrite by name (repeatable), or all: "
                     f"{', '.join(rewrite_names())}. Compare with and without to report a toolchain bug."),
    ] = None,
    list_models: Annotated[bool, typer.Option("--list-models", help="List the models known to work, with their status per target, and exit.")] = False,
    dropin: Annotated[
        list[str] | None,
        typer.Option("--dropin", help="Runtimes that also get a drop-in file (NHWC pixels in, normalization and softmax "
                     "inside, labels in the file's metadata; Core ML: image input + classifier; target "
                     "'<runtime>-dropin'): litert, coreml, executorch, onnx (repeatable or comma-separated). "
                     "Default: litert and coreml, for those among the targets."),
    ] = None,
    no_dropin: Annotated[bool, typer.Option("--no-dropin", help="Write no drop-in file.")] = False,
    dropin_input: Annotated[
        str, typer.Option("--dropin-input", help="Pixels a drop-in file takes: uint8 or float (0..255).")
    ] = "uint8",
    quantize: Annotated[
        str | None,
        typer.Option("--quantize", help="int8: also write '<target>-int8' files (ExecuTorch/LiteRT PT2E static int8, "
                     "ONNX quantize_static, Core ML int8 weights), with the most sensitive layers kept in float.",
                     show_default=False),
    ] = None,
    calibration: Annotated[
        str | None,
        typer.Option("--calibration", help="Calibration images for --quantize: a folder of a few hundred training "
                     "images (never test images), or 'fashion-mnist' (its training split; the default for "
                     "Fashion-MNIST models).", show_default=False),
    ] = None,
    budget: Annotated[float, typer.Option("--budget", min=0.0, max=1.0, help="--quantize: largest top-1 drop "
                      "allowed on held-out images before layers are kept in float (0.005 = 0.5 points).")] = 0.005,
    palettize: Annotated[int | None, typer.Option("--palettize", help="--quantize: the coreml-int8 file gets k-means "
                         "palettized weights of this many bits (4, 6 or 8) instead of int8 weights.",
                         show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    debug: DebugOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Export a model to one bundle with every requested target, checked on each runtime right after export.

    Writes DIR/manifest.json (labels, input contract, files with sha256, source + reference weights), the model files and a README.md model card with the parity and latency measured per target, and prints what each backend took (ExecuTorch delegate calls and the operators left outside, LiteRT / ONNX op counts, the Core ML spec check).

    If a target fails to lower, the bundle is still written with the targets that worked and the command exits 4 naming the failed ones; a target that misses the parity tolerance (as `pocketvit verify`) exits 6.
    """
    from pocketvit.errors import ExportError, VerifyError

    if list_models:
        print_models(as_json)
        return
    if not model:
        raise ExportError("Name the model to export: pocketvit export MODEL --target T (see `pocketvit export "
                          "--list-models`).")
    targets = _targets(target)
    if palettize not in (None, 4, 6, 8):
        raise ExportError(f"--palettize {palettize}: use 4, 6 or 8 bits (k-means lookup-table weights for coreml-int8)")
    from pocketvit.export.rewrites import check_rewrite_names

    check_rewrite_names(no_rewrite or ())  # before loading anything
    from pocketvit.export.bundle import check_out_dir
    from pocketvit.models.sources import resolve_model
    from pocketvit.pipeline.export_model import export_to_bundle

    if out is not None:
        check_out_dir(out)  # before loading anything
    from pocketvit.progress import log

    resolved = resolve_model(model, checkpoint=checkpoint, arch=arch, input_size=input_size,
                             num_classes=num_classes, in_chans=in_chans, labels_file=labels)
    out_dir = out or Path("exports") / _safe_name(resolved.name)
    runtimes = [] if no_dropin else None if not dropin else [r.strip() for v in dropin for r in v.split(",") if r.strip()]
    quantizer = None
    if quantize is not None:
        if quantize.lower() != "int8":
            raise ExportError(f"--quantize {quantize}: only int8 is supported")
        from pocketvit.export.quantize.cli_support import int8_exporter

        quantizer = int8_exporter(calibration, budget=budget, coreml_nbits=palettize)
        quantizer.check(resolved)  # calibration images exist, before any export starts
    result = export_to_bundle(resolved, targets, out_dir, n_inputs=inputs, threads=threads,
                              log=None if as_json else log, dropin=runtimes, dropin_input=dropin_input,
                              quantize=quantizer, disabled_rewrites=tuple(no_rewrite or ()))
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print_result(result)
    ok = [t for t, r in result["targets"].items() if r["status"] != "failed"]
    if result["failed"]:
        raise ExportError(
            f"bundle {out_dir} written with {', '.join(ok)}; could not export to {', '.join(result['failed'])}:\n"
            + "\n".join(result["failed"].values())
        )
    if result["parity_failed"]:
        raise VerifyError(f"bundle {out_dir} written, but {', '.join(result['parity_failed'])} do(es) not run or not "
                          "match eager torch within tolerance (see the table); check with `pocketvit verify`")
    if not as_json:
        err_console.print(f"[bold green]done[/bold green]: bundle {out_dir} ({', '.join(ok)})")
