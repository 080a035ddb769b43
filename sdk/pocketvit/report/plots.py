"""Plots for report.md/html (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path) -> Path:
    from pocketvit.runtime.io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return path


def accuracy_vs_gflops(report: dict[str, Any], path: Path) -> Path | None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    pts = [("teacher", report["teacher"], "tab:gray")]
    pts.append(("student (distilled, eager)", report["student"], "tab:blue"))
    if report.get("baseline"):
        pts.append(("student (labels only)", report["student"] | report["baseline"], "tab:orange"))
    if report["student"].get("test_top1") is None:  # label-free data: no accuracy to plot (teacher agreement instead)
        plt.close(fig)
        return None
    for label, m, color in pts:
        ax.scatter(m["gflops"] * 1e3, m["test_top1"], s=60, color=color, label=label)
    for target, t in report["targets"].items():
        if t.get("test_top1") is not None:
            ax.scatter(report["student"]["gflops"] * 1e3, t["test_top1"], marker="x", s=60, label=f"student on {target}")
    ax.set_xscale("log")
    ax.set_xlabel("MFLOPs per image (log)")
    ax.set_ylabel("test top-1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"{report['recipe']}: accuracy vs compute")
    return save_png(fig, path)


def latency_by_target(report: dict[str, Any], path: Path) -> Path | None:
    rows = [(t, m["latency_ms"]) for t, m in report["targets"].items() if m.get("latency_ms")]
    if not rows:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 0.5 + 0.45 * len(rows)))
    names = [r[0] for r in rows]
    ax.barh(names, [r[1]["median"] for r in rows], color="tab:blue", label="median")
    ax.errorbar([r[1]["median"] for r in rows], names,
                xerr=[[0] * len(rows), [r[1]["p90"] - r[1]["median"] for r in rows]], fmt="none", color="k",
                capsize=3, label="p90")
    ax.set_xlabel("batch-1 latency, ms (measured on each runtime)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7)
    return save_png(fig, path)


def accuracy_vs_latency(report: dict[str, Any], path: Path) -> Path | None:
    """Test top-1 on each runtime against its median batch-1 latency, one point per target (fp32 and int8)."""
    pts = [(t, m) for t, m in report["targets"].items() if m.get("test_top1") is not None and m.get("latency_ms")]
    if not pts:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for t, m in pts:
        int8 = "int8" in str(m.get("precision", ""))
        ax.scatter(m["latency_ms"]["median"], m["test_top1"], marker="s" if int8 else "o", s=50,
                   color="tab:orange" if int8 else "tab:blue")
        ax.annotate(t, (m["latency_ms"]["median"], m["test_top1"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    ax.set_xlabel("median batch-1 latency, ms (on each runtime)")
    ax.set_ylabel("test top-1 (on each runtime)")
    ax.grid(alpha=0.3)
    ax.set_title(f"{report['recipe']}: accuracy vs latency (squares: int8)")
    return save_png(fig, path)
