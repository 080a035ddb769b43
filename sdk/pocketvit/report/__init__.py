"""The bundle an app ships, and the report people read: report.json, report.md, report.html + plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pocketvit.report.plots import accuracy_vs_gflops, accuracy_vs_latency, latency_by_target
from pocketvit.report.text import render_html, render_markdown, render_model_card
from pocketvit.runtime.io import write_json


def write_bundle(out_dir: Path, name: str, report: dict[str, Any], exported: dict, labels: list[str],
                 spec: dict[str, Any], source: dict[str, Any], reference_weights: Path) -> Path:
    """Copy the exported files in, add the reference weights (eager torch for verify/bench), write the manifest."""
    from pocketvit.export import ExportedFile
    from pocketvit.export.bundle import write_bundle_dir

    files = [ExportedFile(target, stage.path / stage.meta["file"], stage.meta["runtime"], stage.meta["precision"],
                          info=dict(stage.meta.get("info") or {}))  # input_form etc. of drop-in files
             for target, stage in exported.items()]
    metrics = {t: {k: v for k, v in m.items() if k in ("test_top1", "teacher_agreement", "parity", "latency_ms")}
               for t, m in report["targets"].items()}
    bundle = out_dir / "bundle"
    write_bundle_dir(bundle, name=name, files=files, labels=labels, input_spec=spec, source=source,
                     reference_weights=reference_weights, metrics=metrics,
                     card=lambda manifest: render_model_card(report, manifest))
    return bundle


def write_bundle_and_report(out_dir: Path, recipe: Any, report: dict[str, Any], exported: dict, splits: Any,
                            spec: dict[str, Any], source: dict[str, Any], reference_weights: Path) -> None:
    write_bundle(out_dir, recipe.name, report, exported, splits.labels, spec, source, reference_weights)
    write_report(out_dir, report)


def write_report(out_dir: Path, report: dict[str, Any]) -> None:
    plots = {
        "accuracy_vs_gflops": accuracy_vs_gflops(report, out_dir / "plots" / "accuracy_vs_gflops.png"),
        "latency": latency_by_target(report, out_dir / "plots" / "latency.png"),
        "accuracy_vs_latency": accuracy_vs_latency(report, out_dir / "plots" / "accuracy_vs_latency.png"),
    }
    from pocketvit.exits.report import exit_plots

    plots.update(exit_plots(report, out_dir))
    plots = {k: str(v.relative_to(out_dir)) for k, v in plots.items() if v is not None}
    write_json(out_dir / "report.json", report)
    from pocketvit.runtime.io import atomic_path

    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text(render_markdown(report, plots))
    with atomic_path(out_dir / "report.html") as tmp:
        tmp.write_text(render_html(report, plots))
