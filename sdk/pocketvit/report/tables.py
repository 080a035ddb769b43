"""The tables report.md, report.html and the model cards share."""

from __future__ import annotations

from typing import Any


def pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def ms(lat: Any, key: str) -> str:
    return "n/a" if not lat else f"{lat[key]:.2f}"


def models_table(report: dict[str, Any]) -> list[list[str]]:
    rows = [["model", "arch", "params", "MFLOPs", "test top-1 (eager)"]]
    for key in ("teacher", "student"):
        m = report[key]
        rows.append([key, m["arch"], f"{m['params']:,}", f"{m['gflops'] * 1e3:.1f}", pct(m["test_top1"])])
    if report.get("baseline"):
        s = report["student"]
        rows.append(["baseline (labels only)", s["arch"], f"{s['params']:,}", f"{s['gflops'] * 1e3:.1f}",
                     pct(report["baseline"]["test_top1"])])
    return rows


def targets_table(report: dict[str, Any]) -> list[list[str]]:
    rows = [["target", "runtime", "precision", "size (KB)", "test top-1 (on runtime)", "top-1 agreement",
             "max abs diff", "median ms", "p90 ms"]]
    for t, m in report["targets"].items():
        p = m.get("parity") or {}
        rows.append([
            t, m["runtime"], m["precision"], f"{m['bytes'] / 1024:.0f}", pct(m.get("test_top1")),
            "n/a" if not p else f"{p['top1_agreement']:.4f}", "n/a" if not p else f"{p['max_abs_diff']:.1e}",
            ms(m.get("latency_ms"), "median"), ms(m.get("latency_ms"), "p90"),
        ])
    return rows


def md_table(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)
