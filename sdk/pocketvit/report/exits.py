"""The early-exit part of report.md / report.html: a table per target and two plots (accuracy vs
compute on the calibration split, with each runtime's measured point; exits taken per target)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pocketvit.report.tables import verdict


def exit_plots(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    exits = {t: e for t, e in (report.get("exits") or {}).items() if e.get("exit_histogram")}
    if not exits:
        return {}
    from pocketvit.report.plots import pyplot, save_png

    plt = pyplot()
    out: dict[str, Path] = {}
    first = next(iter(exits.values()))
    curve = first.get("curve") or []
    if curve:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        ax.step([p["cost"] for p in curve], [100 * p["accuracy"] for p in curve], where="post",
                label="thresholds on the val split (compute = FLOPs / full)")
        val = first.get("val") or {}
        if val:
            ax.plot([val["cost"]], [100 * val["top1"]], "k*", ms=11, label="calibrated thresholds (val)")
        for t, e in exits.items():
            ax.plot([e["latency_ratio"]], [100 * e["test_top1"]], "o", label=f"{t}: test, latency / full")
            ax.plot([1.0], [100 * e["full_test_top1"]], "x", color="grey")
        ax.set_xlabel("expected compute (fraction of the full model)")
        ax.set_ylabel("top-1 (%)")
        lo = min(100 * p["accuracy"] for p in curve)
        top = max(100 * p["accuracy"] for p in curve)
        ax.set_ylim(max(lo, top - 8), top + 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        ax.set_title("Early exits: accuracy vs compute")
        out["exits_curve"] = save_png(fig, out_dir / "plots" / "exits_curve.png")
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    names = list(first["exit_histogram"])
    width = 0.8 / len(exits)
    for k, (t, e) in enumerate(exits.items()):
        total = sum(e["exit_histogram"].values()) or 1
        ax.bar([i + k * width for i in range(len(names))], [100 * e["exit_histogram"][n] / total for n in names],
               width, label=t)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names)
    ax.set_ylabel("test images (%)")
    ax.set_title("Exit taken, whole test split, on each runtime")
    ax.legend(fontsize=8)
    out["exits_histogram"] = save_png(fig, out_dir / "plots" / "exits_histogram.png")
    return out


def exits_table(report: dict[str, Any]) -> list[list[str]]:
    rows = [["target", "thresholds", "top-1 exits", "top-1 full", "drop (pt)", "mean ms exits", "mean ms full",
             "ratio", "segmented, exits off", "exits taken", "eager decisions", "verify"]]
    for t, e in (report.get("exits") or {}).items():
        if e.get("test_top1") is None:
            rows.append([t, ", ".join(f"{v:.3f}" for v in e["thresholds"]), "-", "-", "-", "-", "-", "-", "-", "-",
                         e.get("note", "not run"), verdict(e.get("verify"))])
            continue
        hist = ", ".join(f"{n} {c}" for n, c in e["exit_histogram"].items())
        rows.append([
            t, ", ".join(f"{v:.3f}" for v in e["thresholds"]), f"{e['test_top1']:.4f}", f"{e['full_test_top1']:.4f}",
            f"{100 * e['top1_drop']:.2f}", f"{e['mean_latency_ms']:.3f}", f"{e['full_latency_ms']:.3f}",
            f"{e['latency_ratio']:.2f}x", f"{e['segmented_full_latency_ms']:.3f} ms ({100 * e['segmenting_overhead']:+.1f}%)",
            hist, f"{e['decision_agreement']:.4f}", verdict(e.get("verify")),
        ])
    return rows


def exits_markdown(report: dict[str, Any], plots: dict[str, str], table) -> list[str]:
    """Lines for report.md; `table` renders rows as a markdown table."""
    if not report.get("exits"):
        return []
    lines = ["## Early exits (LGViT; measured on each runtime over the whole test split, batch 1)", "",
             ("Mean wall time per image of pocketvit.runtime's predict (runtime calls, exit decisions, "
              "postprocessing), exits on vs the unsegmented model, taken in turn on every image in one run; "
              "'segmented, exits off' runs every segment."), "", table(exits_table(report)), ""]
    for title, key in (("Accuracy vs compute", "exits_curve"), ("Exits taken", "exits_histogram")):
        if key in plots:
            lines += [f"![{title}]({plots[key]})", ""]
    return lines
