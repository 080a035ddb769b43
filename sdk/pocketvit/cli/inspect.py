"""`pocketvit inspect`: what a bundle holds — model card, targets, input contract, exits, metrics.

Torch-free and quick: reads manifest.json and README.md (sizes are checked, hashes are not; run
`pocketvit verify` for that).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from pocketvit.cli.common import DebugOpt, VerboseOpt, handle_errors

BundleArg = Annotated[Path, typer.Argument(help="Bundle folder or .zip (e.g. runs/fashion-mnist/bundle).")]


def _size(n: int | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def summarize(bundle_path: Path) -> dict[str, Any]:
    from pocketvit.runtime import Bundle

    b = Bundle.open(bundle_path)
    m = b.manifest
    card_path = b.root / "README.md"
    targets = {}
    for t in b.targets:
        e = b.file_info(t)
        targets[t] = {
            "path": e["path"], "runtime": e["runtime"], "precision": e.get("precision", "fp32"),
            "input_form": e.get("input_form", "float-nchw"), "bytes": e.get("bytes"), "sha256": e["sha256"],
        }
    return {
        "bundle": str(b.source),
        "name": b.name,
        "task": b.task,
        "format_version": b.format_version,
        "created_with": m.get("created_with"),
        "labels": b.labels,
        "outputs": b.outputs,
        "input": b.input_spec,
        "targets": targets,
        "exits": b.exits,
        "metrics": m.get("metrics") or {},
        "source": m.get("source"),
        "text_encoder": m.get("text_encoder"),
        "card": card_path.read_text(encoding="utf-8") if card_path.is_file() else None,
    }


def _metric_rows(metrics: dict[str, Any]) -> list[list[str]]:
    rows = []
    for t, mm in metrics.items():
        if not isinstance(mm, dict):
            continue
        par = mm.get("parity") or {}
        lat = mm.get("latency_ms") or {}
        top1 = mm.get("test_top1")

        def f(v, spec):
            return "—" if v is None else format(v, spec)

        if top1 is None and mm.get("teacher_agreement") is not None:  # label-free builds (distill/pretrained.py)
            shown = f"teacher agreement {mm['teacher_agreement']:.4f}"
        else:
            shown = "n/a (not executable here)" if top1 is None and "test_top1" in mm else f(top1, ".4f")
        rows.append([t, shown,
                     f(par.get("top1_agreement"), ".4f"), f(par.get("max_abs_diff"), ".2e"), f(par.get("cosine"), ".6f"),
                     f(lat.get("median"), ".3f"), f(lat.get("p90"), ".3f"), str(lat.get("threads", "—"))])
    return rows


@handle_errors
def inspect(
    bundle: BundleArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as one JSON object.")] = False,
    debug: DebugOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Show a bundle: model card, targets (size, precision, input form, sha256), input contract, exits, metrics.

    Reads manifest.json and README.md only (torch-free, no hashing); `pocketvit verify` checks the files.
    """
    s = summarize(bundle)
    if as_json:
        print(json.dumps(s, indent=2))
        return
    from rich.markdown import Markdown
    from rich.rule import Rule
    from rich.table import Table

    from pocketvit.bench._common import table_console

    console = table_console()
    console.print(Rule(f"model card ({Path(s['bundle']) / 'README.md'})"))
    if s["card"] is None:
        console.print("[yellow]no README.md model card in this bundle[/yellow]")
    elif console.is_terminal:
        console.print(Markdown(s["card"]))
    else:
        console.print(s["card"], markup=False, highlight=False)

    console.print(Rule("bundle"))
    console.print(f"name {s['name']}, task {s['task']}, outputs {s['outputs']}, format_version {s['format_version']}, "
                  f"created with {s['created_with'] or '—'}", highlight=False)
    if s["labels"]:
        shown = ", ".join(s["labels"][:20]) + (f", … ({len(s['labels'])} in all)" if len(s["labels"]) > 20 else "")
        console.print(f"labels ({len(s['labels'])}): {shown}", highlight=False)
    if s["text_encoder"]:
        te = s["text_encoder"]
        files = ", ".join(f"{rt} {e['path']} ({_size(e.get('bytes'))})" for rt, e in te["files"].items())
        console.print(f"text encoder for typed prompts (--prompts): {te.get('source')}, {te['dim']}-d, "
                      f"{te['max_tokens']} tokens; {files}; vocabulary {te['tokenizer']['path']}", highlight=False)
    if s["source"]:
        console.print(f"eager reference: {s['source'].get('arch')} ({s['source'].get('weights')})", highlight=False)

    t = Table(title="targets")
    for col, just in [("target", "left"), ("file", "left"), ("runtime", "left"), ("precision", "left"),
                      ("input form", "left"), ("size", "right"), ("sha256", "left")]:
        t.add_column(col, justify=just)
    for name, e in s["targets"].items():
        t.add_row(name, e["path"], e["runtime"], str(e["precision"]), e["input_form"], _size(e["bytes"]),
                  e["sha256"][:12] + "…")
    console.print(t)

    it = Table(title="input contract")
    it.add_column("key")
    it.add_column("value")
    for k, v in s["input"].items():
        it.add_row(k, json.dumps(v))
    console.print(it)

    if s["exits"]:
        et = Table(title="early exits")
        for col in ("name", "after block", "method / signature", "threshold"):
            et.add_column(col)
        for e in s["exits"]:
            th = e.get("threshold")
            et.add_row(str(e.get("name")), str(e.get("after_block", "—")), str(e.get("method") or e.get("signature")),
                       "— (final)" if th is None else f"{th:g}")
        console.print(et)
    else:
        console.print("early exits: none")

    rows = _metric_rows(s["metrics"])
    if rows:
        mt = Table(title="metrics recorded at build time")
        for col, just in [("target", "left"), ("test top-1", "right"), ("top-1 agree", "right"), ("max |Δ|", "right"),
                          ("cosine", "right"), ("median ms", "right"), ("p90 ms", "right"), ("threads", "right")]:
            mt.add_column(col, justify=just)
        for r in rows:
            mt.add_row(*r)
        console.print(mt)
    else:
        console.print("metrics: none recorded")
