"""The bundle an app ships, and the report people read: report.json, report.md, report.html + plots."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pocketvit import __version__
from pocketvit.io import write_json
from pocketvit.report.plots import accuracy_vs_gflops, latency_by_target
from pocketvit.report.text import render_html, render_markdown, render_model_card


def _copy_into(src: Path, dst: Path) -> None:
    """Copy a file or an .mlpackage folder into the bundle via a temporary name."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    if src.is_dir():
        shutil.copytree(src, tmp)
    else:
        shutil.copy2(src, tmp)
    if dst.exists():
        shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
    tmp.rename(dst)


def write_bundle(out_dir: Path, name: str, report: dict[str, Any], exported: dict, labels: list[str],
                 spec: dict[str, Any], source: dict[str, Any], reference_weights: Path) -> Path:
    """Copy the exported files in, add the reference weights (eager torch for verify/bench), write the manifest."""
    from pocketvit.runtime import file_entry, write_manifest

    bundle = out_dir / "bundle"
    bundle.mkdir(parents=True, exist_ok=True)
    files = {}
    for target, stage in exported.items():
        src = stage.path / stage.meta["file"]
        dst_name = src.name if "-" not in target else f"{src.stem}-{target.split('-', 1)[1]}{src.suffix}"
        _copy_into(src, bundle / dst_name)
        files[target] = file_entry(bundle, target, dst_name, stage.meta["runtime"], stage.meta["precision"],
                                   input_form="float-nchw")
    ref = bundle / source["weights"]
    ref.parent.mkdir(parents=True, exist_ok=True)
    _copy_into(reference_weights, ref)
    metrics = {t: {k: v for k, v in m.items() if k in ("test_top1", "parity", "latency_ms")}
               for t, m in report["targets"].items()}
    manifest = {
        "name": name, "task": "classify", "labels": labels, "input": spec, "outputs": "logits",
        "files": files, "source": source, "exits": [], "metrics": metrics, "created_with": f"pocketvit {__version__}",
    }
    (bundle / "README.md").write_text(render_model_card(report, manifest))
    write_manifest(bundle, manifest)
    return bundle


def write_bundle_and_report(out_dir: Path, recipe: Any, report: dict[str, Any], exported: dict, splits: Any,
                            spec: dict[str, Any], source: dict[str, Any], reference_weights: Path) -> None:
    write_bundle(out_dir, recipe.name, report, exported, splits.labels, spec, source, reference_weights)
    write_report(out_dir, report)


def write_report(out_dir: Path, report: dict[str, Any]) -> None:
    plots = {
        "accuracy_vs_gflops": accuracy_vs_gflops(report, out_dir / "plots" / "accuracy_vs_gflops.png"),
        "latency": latency_by_target(report, out_dir / "plots" / "latency.png"),
    }
    plots = {k: str(v.relative_to(out_dir)) for k, v in plots.items() if v is not None}
    write_json(out_dir / "report.json", report)
    from pocketvit.io import atomic_path

    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text(render_markdown(report, plots))
    with atomic_path(out_dir / "report.html") as tmp:
        tmp.write_text(render_html(report, plots))
