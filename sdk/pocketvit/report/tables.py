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
             "max abs diff", "median ms", "p90 ms", "verify"]]
    for t, m in report["targets"].items():
        p = m.get("parity") or {}
        rows.append([
            t, m["runtime"], m["precision"], f"{m['bytes'] / 1024:.0f}", pct(m.get("test_top1")),
            "n/a" if not p else f"{p['top1_agreement']:.4f}", "n/a" if not p else f"{p['max_abs_diff']:.1e}",
            ms(m.get("latency_ms"), "median"), ms(m.get("latency_ms"), "p90"), verdict(m.get("verify")),
        ])
    return rows


def verdict(v: dict[str, Any] | None) -> str:
    """The verify column: pass, FAIL (with what the build did: verify.on_mismatch), or not run here."""
    if not v:
        return "n/a"
    if v["status"] == "pass":
        return "pass"
    if v["status"] == "not run":
        return "not run here"
    action = v.get("action") or ""
    return "FAIL" + (", dropped" if "dropped" in action else ", kept" if "marked" in action else "")


def verify_notes(report: dict[str, Any]) -> list[str]:
    """One line per file that missed its tolerance: target, figure, value, tolerance, and what the build did."""
    out = []
    for label, entries in (("", report.get("targets") or {}), (" exits", report.get("exits") or {})):
        for t, m in entries.items():
            v = m.get("verify") or {}
            if v.get("status") == "fail":
                out.append(f"{t}{label}: verify failed — {'; '.join(v['failures'])} ({v.get('action', 'failed')})")
    return out


def fallback_notes(report: dict[str, Any]) -> list[str]:
    """One line per fallback a target took: the runtime's (provider, threads, delegate) and the exporter's (its
    second route)."""
    out = []
    for t, m in report["targets"].items():
        out += [f"{t}: fallback — {fb}" for fb in (m.get("runtime_info") or {}).get("fallbacks", [])]
        info = m.get("export_info") or {}
        if info.get("fallback_reason"):
            out.append(f"{t}: fallback — exported with {info.get('exporter') or info.get('frontend')} after the first "
                       f"route failed ({info['fallback_reason']})")
    return out


def card_notes(report: dict[str, Any]) -> list[str]:
    """A model card's lines on files that missed their tolerance (and shipped anyway) and on fallbacks."""
    lines = [f"- {line}" for line in verify_notes(report) + fallback_notes(report)]
    return [*lines, ""] if lines else []


def latency_text(report: dict[str, Any]) -> str:
    """How the targets' latency was timed (method, threads, runs), one sentence."""
    seen = []
    for m in report["targets"].values():
        lat = m.get("latency_ms")
        if not lat:
            continue
        method = lat.get("method") or "sequential loop (a verify stage cached from an earlier pocketvit)"
        text = f"{method}, {lat.get('threads', '?')} thread(s), {lat.get('runs', '?')} runs"
        if text not in seen:
            seen.append(text)
    if not seen:
        return ""
    return ("Latency: batch 1, median and p90 of timed runs after warm-up on the machine that ran the build, "
            + "; ".join(seen) + " (`pocketvit bench` times the same way).")


def md_table(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)
