"""report.md, report.html and the bundle's model card, rendered from report.json."""

from __future__ import annotations

import html
from typing import Any

from pocketvit.report.clip import clip_markdown
from pocketvit.report.exits import exits_markdown
from pocketvit.report.int8 import quantization_markdown
from pocketvit.report.tables import (
    card_notes,
    fallback_notes,
    latency_text,
    md_table,
    models_table,
    pct,
    targets_table,
    verify_notes,
)


def _notes(report: dict[str, Any]) -> list[str]:
    notes = [f"- {line}" for line in verify_notes(report)]
    for t, m in report["targets"].items():
        if m.get("note"):
            notes.append(f"- {t}: {m['note']}")
        info = m.get("export_info") or {}
        if "delegate_calls" in info:
            notes.append(f"- {t}: {info['delegate_calls']} delegate call(s), {info.get('nodes_outside', 0)} node(s) "
                         "outside the delegate")
    return notes + [f"- {line}" for line in fallback_notes(report)]


def failed_banner(report: dict[str, Any]) -> list[str]:
    """The first lines of a report whose build stopped on a verify failure (verify.on_mismatch: fail)."""
    v = report.get("verify") or {}
    if v.get("passed", True) or v.get("bundle", True) is not None:
        return []
    return ["**Verification failed: no bundle was written.** " + " | ".join(v["failed"]), ""]


def render_markdown(report: dict[str, Any], plots: dict[str, str]) -> str:
    d = report["dataset"]
    unlabeled = (f" ({d['train_labeled']} labeled + {d['unlabeled']} unlabeled, which only the student learns from "
                 "through the teacher cache)" if d.get("unlabeled") else "")
    lines = [
        f"# {report['recipe']}: pocketvit {report['version']} report", "",
        f"Data: {d['name']} — {d['train']} train{unlabeled} / {d['val']} val / {d['test']} test images.", "",
    ]
    if report.get("warnings"):
        lines += ["**Warnings**", "", *[f"- {w}" for w in report["warnings"]], ""]
    lines += [
        "## Models", "", md_table(models_table(report)), "",
        *failed_banner(report),
        "## Targets (every figure measured by running the exported file on its runtime, whole test split)", "",
        md_table(targets_table(report)), "", latency_text(report), "",
    ]
    notes = _notes(report)
    if notes:
        lines += ["Notes:", *notes, ""]

    lines += teacher_training_markdown(report)
    lines += quantization_markdown(report)

    lines += exits_markdown(report, plots, md_table)
    lines += agreement_markdown(report)

    lines += clip_markdown(report, md_table)
    dist = report.get("distill") or {}
    if dist:
        lines += [f"Teacher cache: {dist['cache_epochs']} augmented epoch(s), top-{dist['topk']} probabilities, "
                  f"{dist['cache_bytes'] / 1e6:.1f} MB; the student trained {dist['student_epochs']} epoch(s) from it.", ""]
        if dist.get("cache_speedup"):
            lines += [f"Cache speed-up: **{dist['cache_speedup']:.2f}x** — a student training step took "
                      f"{dist['cache_step_seconds'] * 1e3:.0f} ms from the cache vs {dist['online_step_seconds'] * 1e3:.0f} ms "
                      f"with the teacher online (median of {dist['bench_steps']} alternated steps each, batch "
                      f"{dist['bench_batch_size']}, same run, {dist.get('bench_threads', '?')} thread(s)).", ""]
            if dist.get("student_step_seconds"):  # where a step's time goes (distill/bench_cache.py)
                lines += [(f"Per step: {dist['student_step_seconds'] * 1e3:.0f} ms the student's training step "
                          f"({dist.get('bench_train_precision', '32-true')}), "
                          f"{dist['cache_batch_seconds'] * 1e3:.1f} ms the batch from the cache (top-k read + augmentation "
                          f"replay), {dist['online_batch_seconds'] * 1e3:.0f} ms the batch online (augmentation + teacher "
                          "forward + top-k)."), ""]
    for title, key in (("Accuracy vs compute", "accuracy_vs_gflops"), ("Latency per target", "latency"),
                       ("Accuracy vs latency", "accuracy_vs_latency")):
        if key in plots:
            lines += [f"## {title}", "", f"![{title}]({plots[key]})", ""]
    lines += ["## Stages", "", md_table([["stage", "seconds", "cached"]] + [
        [s, f"{v['seconds']:.1f}", "yes" if v["cached"] else "no"] for s, v in report["stages"].items()]), ""]
    return "\n".join(lines)


def teacher_training_markdown(report: dict[str, Any]) -> list[str]:
    """How each model trained (optimizer steps, early stopping) and the teacher measured on a runtime."""
    lines = []
    for who, r in (report.get("training") or {}).items():
        for i, run in enumerate(r if isinstance(r, list) else [r]):
            name = who if not isinstance(r, list) else f"{who} member {i + 1}"
            stop = (f", early stop: kept epoch {run['best_epoch']} (val top-1 {run['best_val']:.4f})"
                    if run.get("stopped_early") else
                    f", kept epoch {run['best_epoch']} (val top-1 {run['best_val']:.4f})" if run.get("best_epoch")
                    else "")
            lines.append(f"- {name}: {run['steps']} optimizer steps ({run['epochs']} of {run['planned_epochs']} "
                         f"planned epoch(s) x {run['steps_per_epoch']}){stop}")
    for key, who in (("teacher_targets", "the teacher"), ("baseline_targets", "the labels-only student")):
        for target, m in (report.get(key) or {}).items():
            if m.get("test_top1") is not None:
                lines.append(f"- {who} exported to {target}: test top-1 {m['test_top1']:.4f} on its runtime "
                             f"(eager {m['eager_test_top1']:.4f}), median {m['latency_ms']['median']:.2f} ms")
    return ["## Training", "", *lines, ""] if lines else []


def agreement_markdown(report: dict[str, Any]) -> list[str]:
    """Teacher agreement (pretrained teachers): each model's top-1 equals the teacher's on this share of the test
    split; on label-free data it is the only held-out measure."""
    rows = agreement_table(report)
    if len(rows) < 2:
        return []
    s = report["student"]
    lead = (f"Student (eager) test teacher agreement: {s['test_teacher_agreement']:.4f}. "
            if s.get("test_teacher_agreement") is not None else "")
    return ["## Teacher agreement (top-1 of the exported student = top-1 of the teacher, test split)", "",
            lead + ("The data has no labels, so this replaces label accuracy." if not report["dataset"].get(
                "labeled", True) else ""), "",
            md_table(rows), ""]


def agreement_table(report: dict[str, Any]) -> list[list[str]]:
    rows = [["target", "runtime", "teacher agreement (on runtime)", "eager"]]
    for t, m in report["targets"].items():
        if m.get("teacher_agreement") is not None:
            eager = m.get("eager_teacher_agreement")
            rows.append([t, m["runtime"], f"{m['teacher_agreement']:.4f}", "n/a" if eager is None else f"{eager:.4f}"])
    return rows


def _html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(report: dict[str, Any], plots: dict[str, str]) -> str:
    imgs = "".join(f'<p><img src="{html.escape(p)}" alt="{html.escape(k)}"></p>' for k, p in plots.items())
    notes = "".join(f"<li>{html.escape(n[2:])}</li>" for n in _notes(report))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(report['recipe'])} — pocketvit</title>
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f3f3f3}}</style></head><body>
<h1>{html.escape(report['recipe'])}: pocketvit {html.escape(report['version'])} report</h1>
<h2>Models</h2>{_html_table(models_table(report))}
{"".join(f"<p>{html.escape(b)}</p>" for b in failed_banner(report) if b)}
<h2>Targets</h2><p>Every figure measured by running the exported file on its runtime, whole test split.</p>
{_html_table(targets_table(report))}<p>{html.escape(latency_text(report))}</p><ul>{notes}</ul>{_agreement_html(report)}{imgs}</body></html>
"""


def _agreement_html(report: dict[str, Any]) -> str:
    rows = agreement_table(report)
    return "" if len(rows) < 2 else f"<h2>Teacher agreement</h2>{_html_table(rows)}"


# licences of the data sets pocketvit builds from, for the model card
DATA_LICENCES = {"fashion-mnist": "Fashion-MNIST, MIT licence (Zalando Research)"}


def _licence_lines(report: dict[str, Any]) -> list[str]:
    """Licence of every set of weights involved in a build: student, teacher, the data they come from."""
    t, d = report["teacher"], report["dataset"]
    data = DATA_LICENCES.get(d["name"], f"{d['name']}: see the data set's own terms")
    return [f"  - student ({report['student']['arch']}): made by this build; yours to ship under the data's terms.",
            f"  - teacher ({t['arch']}): " + ("used as it comes (see the build's report for its weights and "
            "their licence), not shipped in this bundle." if t.get("pretrained") else f"trained by pocketvit on "
            f"{d['name']} (the shipped teacher in recipes/weights/ is pocketvit's own), not shipped in this bundle."),
            f"  - data: {data}."]


def render_model_card(report: dict[str, Any], manifest: dict[str, Any]) -> str:
    from pocketvit.report.export_card import dropin_card_lines

    t, s, d = report["teacher"], report["student"], report["dataset"]
    return "\n".join([
        f"# {manifest['name']} (pocketvit bundle)", "",
        f"A {manifest['task']} model for {len(manifest['labels'])} classes ({', '.join(manifest['labels'][:10])}).", "",
        f"- Student: {s['arch']}, {s['params']:,} parameters, {s['gflops'] * 1e3:.1f} MFLOPs per image.",
        f"- Teacher: {t['arch']}, {t['params']:,} parameters, test top-1 {pct(t['test_top1'])} (eager).",
        f"- Data: {d['name']} ({d['train']} training images; figures on the {d['test']}-image test split).",
        "- Training: TinyViT-style distillation from a sparse (top-k) teacher cache.",
        "- Licence of the weights: produced by this build from the data above; no third-party weights.",
        *_licence_lines(report), "",
        "## Measured on each runtime", "", md_table(targets_table(report)), "",
        "Accuracy is the exported file run on its own runtime over the whole test split. " + latency_text(report), "",
        *card_notes(report),
        *dropin_card_lines(manifest),
        "## Input contract", "", "```json", _json(manifest["input"]), "```", "",
        "Load it with `pocketvit.runtime.load(<bundle>, target=...)`; see manifest.json for the files.", "",
    ])


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2)
