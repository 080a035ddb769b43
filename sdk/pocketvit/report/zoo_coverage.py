"""The zoo's coverage matrix (pipeline/zoo_coverage.py) as evidence files and a docs table: model x target, each cell
`ok`, `ok†` (through a workaround), `ran*` (int8 that ran but missed the int8 tolerance: random weights and random
calibration images) or a numbered failure with its reason, the toolchain's known issue and the targets that worked.

    write_evidence(rows, Path("docs/results"), page=Path("docs/zoo.md"))
    # docs/results/zoo-coverage.json (+ totals, meta), docs/results/zoo-coverage.md, the table in docs/zoo.md
"""

from __future__ import annotations

import os
import platform
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

from pocketvit.runtime.io import atomic_path, write_json

COLUMNS = ("executorch", "litert", "onnx", "coreml", "litert-dropin", "coreml-dropin",
           "executorch-int8", "litert-int8", "onnx-int8", "coreml-int8")
EVIDENCE = "zoo-coverage"
START, END = "<!-- zoo-coverage:start -->", "<!-- zoo-coverage:end -->"
PACKAGES = ("torch", "timm", "executorch", "litert-torch", "ai-edge-litert", "coremltools", "onnxruntime")


def toolchain_versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def totals(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per target: ok (of which worked around), ran (int8 outside tolerance), failed, models."""
    out: dict[str, dict[str, int]] = {}
    for t in COLUMNS:
        c: Counter[str] = Counter()
        for r in rows:
            cell = r["targets"].get(t)
            if cell is None:
                continue
            c["models"] += 1
            status = cell["status"]
            c[{"ok": "ok", "runs": "ran"}.get(status, "failed")] += 1
            if status == "ok" and cell.get("workarounds"):
                c["worked_around"] += 1
        out[t] = {k: c.get(k, 0) for k in ("ok", "worked_around", "ran", "failed", "models")}
    return out


def _cell(cell: dict[str, Any], notes: list[str]) -> str:
    status = cell["status"]
    if status == "ok":
        return "ok†" if cell.get("workarounds") else "ok"
    if status == "runs":
        return "ran*"
    notes.append(_failure_text(cell))
    return f"fails [{len(notes)}]"


def _failure_text(cell: dict[str, Any]) -> str:
    text = cell.get("reason") or "?"
    issue = cell.get("issue")
    if issue:
        text += f" — known {issue['toolchain']} issue: {issue['summary']}"
        if issue.get("link"):
            text += f" ({issue['link']})"
        if issue.get("workaround"):
            text += f"; workaround: {issue['workaround']}"
    if cell.get("works_instead"):
        text += f" — works instead: {', '.join(cell['works_instead'])}"
    return text.replace("|", "/")


def _models_by(rows: list[dict[str, Any]], key: str) -> dict[str, list[str]]:
    """"target: item" -> the models whose cell lists that item under `key` (workarounds, mends); an item's
    parenthesised detail is left out."""
    out: dict[str, list[str]] = {}
    for r in rows:
        for t, c in r["targets"].items():
            for item in c.get(key, []):
                out.setdefault(f"{t}: {item.split(' (')[0]}", []).append(r["model"])
    return out


MENDS_ANCHOR = "#mends-to-the-pt2e-quantizers"


def table(rows: list[dict[str, Any]], targets: str | None = "targets.md") -> str:
    """The markdown matrix of `rows` (one size), its totals, failure notes and workarounds; `targets` is the link to
    the Targets page from where the text is written (None: named, not linked)."""
    notes: list[str] = []
    head = "| model | family | size | params (M) | " + " | ".join(COLUMNS) + " | seconds |"
    lines = [head, "|---|---|---|---:|" + "---|" * len(COLUMNS) + "---:|"]
    for r in rows:
        cells = [_cell(r["targets"][t], notes) if t in r["targets"] else "—" for t in COLUMNS]
        lines.append(f"| {r['model']} | {r['family']} | {r['size']} | {r.get('params_m', '—')} | "
                     + " | ".join(cells) + f" | {r.get('seconds', 0):.0f} |")
    tot = totals(rows)
    lines.append("| **ok / models** | | | | " + " | ".join(
        (f"**{tot[t]['ok']}/{tot[t]['models']}**" + (f" ({tot[t]['ran']} ran*)" if tot[t]["ran"] else ""))
        if tot[t]["models"] else "—" for t in COLUMNS) + f" | {sum(r.get('seconds', 0) for r in rows) / 60:.0f} min |")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\nFailures:\n\n" + "".join(f"{i}. {n}\n" for i, n in enumerate(notes, 1))
    by = _models_by(rows, "workarounds")
    if by:
        text += "\n† Worked around:\n\n" + "".join(f"- {k}: {', '.join(v)}\n" for k, v in sorted(by.items()))
    mends = _models_by(rows, "mends")
    if mends:
        where = f"[Targets]({targets}{MENDS_ANCHOR})" if targets else "docs/targets.md, \"Mends to the PT2E quantizers\""
        text += (f"\nint8 quantizer mends that changed the file ({where}; not "
                 "marked †, as a mend may change a graph the toolchain would have taken anyway):\n\n"
                 + "".join(f"- {k}: {', '.join(v)}\n" for k, v in sorted(mends.items())))
    return text


TITLES = {"small": "Small size: 64 x 64, or the smallest size the model accepts", "224": "224 x 224"}


def groups(rows: list[dict[str, Any]], small: dict[str, int] | None = None) -> dict[str, list[dict[str, Any]]]:
    """{"small": each model's row at its small size (64, or the smallest it accepts), "224": rows at 224 x 224}, in
    the zoo's order; `small` maps model -> small size in that order (models outside it follow, at 64)."""
    small = small or {}
    rank = {n: i for i, n in enumerate(small)}

    def ordered(group: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(group, key=lambda r: rank.get(r["model"], len(rank)))

    out = {"small": ordered([r for r in rows if r["size"] == small.get(r["model"], 64)]),
           "224": ordered([r for r in rows if r["size"] == 224])}
    return {k: v for k, v in out.items() if v}


def render(rows: list[dict[str, Any]], small: dict[str, int] | None = None,
           targets: str | None = "targets.md") -> str:
    """The small-size table, then the 224 x 224 one (`targets`: as in `table`)."""
    return "\n".join(f"### {TITLES[k]}\n\n{table(g, targets)}" for k, g in groups(rows, small).items())


def write_evidence(rows: list[dict[str, Any]], out: Path, page: Path | None = None,
                   small: dict[str, int] | None = None) -> None:
    """OUT/zoo-coverage.json (rows, totals per size, toolchain versions), OUT/zoo-coverage.md, and the table in
    `page` between its zoo-coverage markers."""
    by = groups(rows, small)
    meta = {"machine": f"{platform.system()} {platform.machine()}", "toolchains": toolchain_versions(),
            "run_seconds": {k: round(sum(r.get("seconds", 0) for r in g), 1) for k, g in by.items()},
            "command": "make test-zoo (pocketvit zoo-coverage); make test-zoo ZOO_SIZE=224"}
    write_json(out / f"{EVIDENCE}.json", {"meta": meta, "totals": {k: totals(g) for k, g in by.items()},
                                          "models": rows})
    # the evidence table links the Targets page only when it is written inside the docs beside `page`
    docs = page.parent.resolve() if page is not None else None
    here = out.resolve()
    inside = docs is not None and (here == docs or docs in here.parents)
    evidence = render(rows, small, os.path.relpath(docs / "targets.md", here) if inside else None)
    with atomic_path(out / f"{EVIDENCE}.md") as tmp:
        tmp.write_text(f"# Zoo coverage (`make test-zoo`)\n\n{evidence}")
    if page is not None and page.is_file():
        body = page.read_text()
        if START in body and END in body:
            before, rest = body.split(START, 1)
            after = rest.split(END, 1)[1]
            with atomic_path(page) as tmp:
                tmp.write_text(f"{before}{START}\n{render(rows, small)}\n{END}{after}")
