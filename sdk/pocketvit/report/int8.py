"""The report's int8 section: each int8 target against its fp32 sibling, and what the sensitivity pass chose."""

from __future__ import annotations

from typing import Any


def _ratio(a: Any, b: Any) -> str:
    return "n/a" if a is None or b in (None, 0) else f"{a / b:.2f}x"


def int8_rows(report: dict[str, Any]) -> list[list[str]]:
    """[header, rows]: int8 target vs its fp32 target measured in the same build."""
    rows = [["int8 target", "vs", "top-1 drop (points)", "agreement with fp32", "size ratio", "median latency ratio"]]
    targets = report.get("targets") or {}
    for t, m in targets.items():
        if not t.endswith("-int8"):
            continue
        base = targets.get(t.split("-", 1)[0]) or {}
        drop = None
        if m.get("test_top1") is not None and base.get("test_top1") is not None:
            drop = 100 * (base["test_top1"] - m["test_top1"])
        agree = (m.get("parity") or {}).get("top1_agreement")
        lat, blat = (m.get("latency_ms") or {}).get("median"), (base.get("latency_ms") or {}).get("median")
        rows.append([t, t.split("-", 1)[0] if base else "(no fp32 target)", "n/a" if drop is None else f"{drop:+.2f}",
                     "n/a" if agree is None else f"{agree:.4f}", _ratio(m.get("bytes"), base.get("bytes")),
                     _ratio(lat, blat)])
    return rows


def quantization_markdown(report: dict[str, Any]) -> list[str]:
    """Lines for report.md (empty when the build has no int8 target)."""
    rows = int8_rows(report)
    if len(rows) == 1:
        return []
    out = ["## int8 (measured on each runtime against the fp32 file of the same runtime)", "",
           "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    out.append("")
    plan = next((m["export_info"].get("plan") for t, m in report["targets"].items()
                 if t.endswith("-int8") and (m.get("export_info") or {}).get("plan")), None)
    if plan:
        cal = plan.get("calibration") or {}
        out.append(f"Calibration: {cal.get('images', plan.get('calibration_images', '?'))} images from the "
                   f"{cal.get('split', 'training')} split (never the test split).")
        s = plan.get("sensitivity")
        if s:
            out.append(f"Sensitivity pass (each layer quantized alone, then everything; held-out validation images, "
                       f"{s['held_out_images']}): fp32 top-1 {s['fp32_top1']:.4f}, all-int8 {s['all_int8_top1']:.4f}, "
                       f"budget {100 * s['budget']:.2f} points; kept in float: "
                       f"{', '.join(plan['float_layers']) or 'none (all-int8 met the budget)'}.")
            worst = s.get("ranking") or []
            if worst:
                out.append("Most sensitive layers (relative logit error when quantized alone): "
                           + ", ".join(f"{r['layer']} {r['rel_error']:.1e}" for r in worst[:5]) + ".")
        else:
            out.append("Sensitivity pass off: every quantizable layer is int8.")
        ps = plan.get("post_softmax") or {}
        if ps.get("8bit"):
            out.append(f"Post-softmax activations ({ps['softmax_values']:,} values from {ps['images']} calibration "
                       f"images; {100 * ps['fraction_below_1_over_256']:.0f}% are below 1/256, the runtimes' int8 step): "
                       "mean squared error of uniform vs I&S-ViT shift-uniform-log2 (SULQ) quantization — "
                       + ", ".join(f"{b}: {ps[b]['uniform_mse']:.1e} vs {ps[b]['sulq_mse']:.1e}"
                                   for b in ("4bit", "6bit", "8bit") if b in ps)
                       + ". No target runtime can execute SULQ (README: int8 quantization).")
        out.append("")
    return out + qat_and_palettize_lines(report)


def qat_and_palettize_lines(report: dict[str, Any]) -> list[str]:
    """Whether QAT ran, why, and held-out top-1 before/after; a palettized Core ML file's size vs fp16."""
    out = []
    infos = {t: m.get("export_info") or {} for t, m in (report.get("targets") or {}).items() if t.endswith("-int8")}
    qat = next((i["qat"] for i in infos.values() if i.get("qat")), None)
    if qat:
        line = f"QAT (quantize.qat: {qat['mode']}): {'ran' if qat['ran'] else 'did not run'} — {qat['reason']}."
        if qat["ran"]:
            b, a = qat["before"], qat["after"]
            line += (f" Held-out top-1 all-int8 (XNNPACK PT2E simulated): {b['top1']:.4f} after PTQ, {a['top1']:.4f} "
                     f"after {qat['epochs']} QAT epoch(s) of {qat['loss']} (fp32 {b['fp32_top1']:.4f}); {qat['use']}")
            if qat["used"]:
                line += (f"; kept in float after QAT: {', '.join(qat['float_layers']) or 'none'}; applies to "
                         + ", ".join(t for t, i in infos.items() if i.get("qat")))
            line += "."
        out += [line, ""]
    pal = infos.get("coreml-int8") or {}
    if pal.get("palettized_weight_ops"):
        out += [(f"coreml-int8 is palettized ({pal['weights']}; {pal['palettized_weight_ops']} weight ops): "
                f"{pal['bytes'] / 1024:.0f} KB, {pal['size_vs_fp16']:.2f}x of the fp16 package; conversion and spec "
                "checked on Linux, not executed (Core ML runs only on Apple devices)."), ""]
    return out
