"""The bundle an app ships, and the report people read: report.json, report.md, report.html + plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pocketvit.report.clip import TEXT_EMBEDDINGS
from pocketvit.report.clip import model_card as zero_shot_model_card
from pocketvit.report.exits import exit_plots
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
    metrics = bundle_metrics(report, exported, ("test_top1", "teacher_agreement", "parity", "latency_ms"))
    bundle = out_dir / "bundle"
    write_bundle_dir(bundle, name=name, files=files, labels=labels, input_spec=spec, source=source,
                     reference_weights=reference_weights, metrics=metrics, extra=unverified(report, exported),
                     card=lambda manifest: render_model_card(report, manifest))
    return bundle


def bundle_metrics(report: dict[str, Any], exported: dict, keys: tuple[str, ...]) -> dict[str, Any]:
    """manifest.json's metrics: the shipped targets' figures and their verify verdict (pass, or a failure kept by
    verify.on_mismatch: keep)."""
    return {t: {k: v for k, v in m.items() if k in (*keys, "verify")}
            for t, m in report["targets"].items() if t in exported}


def unverified(report: dict[str, Any], exported: dict) -> dict[str, Any]:
    """manifest.json's `unverified`: shipped files (and exit programs, "<target> exits") that missed their tolerance,
    kept by verify.on_mismatch: keep."""
    kept = [t for t in (report.get("verify") or {}).get("kept", []) if t.split(" ")[0] in exported]
    return {"unverified": kept} if kept else {}


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
    plots.update(exit_plots(report, out_dir))
    plots = {k: str(v.relative_to(out_dir)) for k, v in plots.items() if v is not None}
    write_json(out_dir / "report.json", report)
    from pocketvit.runtime.io import atomic_path

    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text(render_markdown(report, plots))
    with atomic_path(out_dir / "report.html") as tmp:
        tmp.write_text(render_html(report, plots))


def write_zero_shot_bundle(out_dir: Path, recipe: Any, report: dict[str, Any], exported: dict, splits: Any,
                           spec: dict[str, Any], dim: int, weights: Path, text_embeddings: Path,
                           text_encoders: dict[str, Any] | None = None) -> Path:
    """bundle/: the exported files, text_embeddings.npy (sha256 in the manifest), task zero-shot, the text encoder
    when the recipe puts one in (clip.text_encoder_in_bundle); then the report."""
    from pocketvit.clip.text_bundle import bundle_text_encoder_entry
    from pocketvit.export import ExportedFile
    from pocketvit.export.bundle import place, write_bundle_dir
    from pocketvit.models import source_block

    bundle = out_dir / "bundle"
    place(text_embeddings, bundle / TEXT_EMBEDDINGS)
    text_encoder = bundle_text_encoder_entry(bundle, text_encoders or {})
    files = [ExportedFile(t, st.path / st.meta["file"], st.meta["runtime"], st.meta["precision"],
                          info=dict(st.meta.get("info") or {})) for t, st in exported.items()]
    metrics = bundle_metrics(report, exported, ("test_top1", "heldout_top1", "parity", "latency_ms"))
    c, h, _ = splits.shape
    s = report["student"]
    source = source_block(s["arch"], {**recipe.student.options, "embed_norm": True}, c, dim, h)
    write_bundle_dir(bundle, name=recipe.name, files=files, labels=list(splits.labels), input_spec=spec,
                     source=source, reference_weights=weights, task="zero-shot", outputs="embedding", metrics=metrics,
                     extra={"text_embeddings": TEXT_EMBEDDINGS, "logit_scale": 100.0}
                     | ({"text_encoder": text_encoder} if text_encoder else {}) | unverified(report, exported),
                     card=lambda manifest: zero_shot_model_card(report, manifest))
    write_report(out_dir, report)
    return bundle
