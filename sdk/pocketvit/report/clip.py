"""The CLIP sections of report.md and the zero-shot bundle's model card."""

from __future__ import annotations

from typing import Any

from pocketvit.report.tables import card_notes, latency_text, md_table, pct, targets_table

TEXT_EMBEDDINGS = "text_embeddings.npy"


def zero_shot_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = [["measured on", "all classes", "held-out classes (10-way)", "held-out classes (among held-out)",
             "seen classes"]]
    for name, m in (report.get("zero_shot") or {}).items():
        rows.append([name, pct(m.get("test_top1")), pct(m.get("heldout_top1")),
                     pct(m.get("heldout_top1_among_heldout")), pct(m.get("seen_top1"))])
    return rows


def text_student_lines(ts: dict[str, Any] | None, table) -> list[str]:
    if not ts:
        return []
    rows = [["student", "params", "held-out cosine before", "after distillation", "retrieval top-1 after"]]
    for init in ("inherited", "random"):
        if init in ts:
            m = ts[init]
            rows.append([init + (f" (layers {m['kept_layers']})" if m.get("kept_layers") else ""), f"{m['params']:,}",
                         f"{m['heldout_cosine_before']:.4f}", f"{m['heldout_cosine_after']:.4f}",
                         f"{m['heldout_retrieval_top1_after']:.4f}"])
    s = ts["sentences"]
    return ["## TinyCLIP text student", "",
            (f"Teacher {ts['teacher']['name']} ({ts['teacher']['layers']} layers, {ts['teacher']['params']:,} params); "
            f"{s['train']} training / {s['heldout']} held-out sentences ({s['source']})."), "", table(rows), ""]


def clip_markdown(report: dict[str, Any], table) -> list[str]:
    """report.md lines for a clip build (nothing for other builds)."""
    if not report.get("zero_shot"):
        return []
    c = report["clip"]
    r = c["reinforced"]
    lines = ["## Zero-shot (cosine to the class prompt embeddings, whole test split)", "", table(zero_shot_rows(report)),
             "", (f"Text teacher {c['text_teacher']} ({c['embed_dim']}-d); held-out classes "
             f"{c['heldout_classes'] or 'none'} (kept out of the projection heads, the reinforced dataset and the student's training); reinforced dataset "
             f"{r['images']} images x {r['augmentations']} augmentations x {r['teachers']} teacher(s), "
             f"{r['captions_per_image']} captions per image, {r['bytes'] / 1e6:.1f} MB; student trained "
             f"{c['student_epochs']} epoch(s) with CLIP loss + {c['kd_weight']} x KD (logit scale {c['scale']:g}), "
             "no teacher forward."), ""]
    from pocketvit.clip.text_bundle import text_encoder_markdown

    return lines + text_student_lines(report.get("text_student"), table) + text_encoder_markdown(report, table)


def model_card(report: dict[str, Any], manifest: dict[str, Any]) -> str:
    from pocketvit.report.export_card import dropin_card_lines

    t, s, d, c = report["teacher"], report["student"], report["dataset"], report["clip"]
    return "\n".join([
        f"# {manifest['name']} (pocketvit zero-shot bundle)", "",
        (f"An image encoder whose L2-normalised embedding is compared by cosine with {len(manifest['labels'])} class "
        f"prompt embeddings ({TEXT_EMBEDDINGS}, from {c['text_teacher']}); add a class by embedding its prompts "
        "with the same text encoder."), "",
        f"- Student: {s['arch']}, {s['params']:,} parameters, {s['gflops'] * 1e3:.1f} MFLOPs per image.",
        f"- Image teacher: {t['arch']} (zero-shot test top-1 {pct(t['test_top1'])}, eager).",
        f"- Data: {d['name']} ({d['train']} training images, held-out classes {c['heldout_classes'] or 'none'}).",
        "- Training: MobileCLIP-style reinforced dataset, CLIP loss + KD on image-text similarity matrices.",
        "- Licence: weights produced by this build" + _text_licence(c["text_teacher"], manifest), "",
        "## Measured on each runtime (zero-shot top-1 on the whole test split)", "", md_table(targets_table(report)), "",
        latency_text(report), "", *card_notes(report),
        md_table(zero_shot_rows(report)), "",
        *dropin_card_lines(manifest),
    ])


def _text_licence(teacher: str, manifest: dict[str, Any]) -> str:
    from pocketvit.clip.text_bundle import STUDENT_NAME

    te = manifest.get("text_encoder")
    if not te:
        return ("; text teacher all-MiniLM-L6-v2 (Apache-2.0), not shipped: only its class embeddings are." if
                teacher == "minilm" else f"; check the text teacher's own terms ({teacher}).")
    files = ", ".join(e["path"] for e in te["files"].values())
    what = ("all-MiniLM-L6-v2 (Apache-2.0)" if teacher == "minilm" else teacher) + (
        ", as a TinyCLIP student distilled from it" if te["source"] == STUDENT_NAME else "")
    return (f"; the text encoder ({files} + {te['tokenizer']['path']}) is {what}: typed prompts "
            "(`--prompts \"a red dress\"`, `Predictor.use_prompts`) are embedded on the device"
            + ("." if teacher == "minilm" else "; check its own terms."))
