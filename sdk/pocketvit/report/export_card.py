"""The model card (README.md) of a bundle written by `pocketvit export`, and the drop-in section every card shares."""

from __future__ import annotations

import json
from typing import Any

from pocketvit.export.bundle import REFERENCE_WEIGHTS


def dropin_card_lines(manifest: dict[str, Any]) -> list[str]:
    """Model-card section on the files that carry the image contract inside (empty when there are none)."""
    files = manifest.get("files") or {}
    rows = [(t, e) for t, e in files.items() if e.get("input_form", "float-nchw") != "float-nchw"]
    onnx = [t for t, e in files.items() if e.get("runtime") == "onnx"]
    if not rows and not onnx:
        return []
    spec = manifest["input"]
    lines = ["## Files an app can load without preprocessing code", ""]
    for t, e in rows:
        if e.get("runtime") == "coreml":
            lines.append(
                f"- **{t}** (`{e['path']}`): Core ML image input ({spec['height']}x{spec['width']}, "
                f"{'GRAYSCALE' if spec['channels'] == 1 else spec.get('color_order', 'RGB')} ImageType whose scale/bias "
                "are the normalization above) and a classifier (`classLabel`, `classLabel_probs` with these labels): "
                "Vision's `VNCoreMLRequest` takes a `CVPixelBuffer` as it is. Spec checked on Linux; execution needs "
                "macOS/iOS.")
            continue
        over = e.get("input") or {}
        dtype = "uint8" if e["input_form"] == "uint8-nhwc" else "float32 (values 0..255)"
        gray = " (the model converts to gray inside, with PIL's luma)" if spec["channels"] == 1 else ""
        lines.append(
            f"- **{t}** (`{e['path']}`): NHWC {over.get('channels', spec['channels'])}-channel "
            f"{over.get('color_order', spec.get('color_order'))} {dtype} pixels of {spec['height']}x{spec['width']}"
            f"{gray}; scaling, mean and std are inside the graph; outputs {e.get('outputs', manifest.get('outputs'))}."
            " Resize and crop stay the app's job.")
        if e.get("runtime") == "litert":
            if e.get("outputs", manifest.get("outputs")) == "embedding":
                lines.append("  MediaPipe Tasks `ImageEmbedder` / the TFLite Task Library load it as it is (image "
                             "embedder TFLite metadata: name, version, normalization, RGB colour space); compare its "
                             "embedding by cosine with the rows of the bundle's text embeddings.")
            else:
                lines.append("  MediaPipe Tasks `ImageClassifier` / the TFLite Task Library load it as it is; label "
                             "names come from its TFLite metadata (name, version, labels, normalization, RGB colour "
                             "space).")
    if onnx:
        lines.append(f"- **{', '.join(onnx)}**: the .onnx carries `metadata_props` `labels` (JSON list), "
                     "`preprocessing` (this input contract as JSON), `input_form` and `outputs`.")
    return lines + [""]


def _table(rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return out + ["| " + " | ".join(r) + " |" for r in rows[1:]]


def _fmt(v: Any, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def render_export_card(result: dict[str, Any], manifest: dict[str, Any]) -> str:
    """README.md of an exported bundle: what the model is, its weights and licence, figures per target."""
    prov = result["provenance"]
    spec = manifest["input"]
    labels = manifest["labels"]
    rows = [["target", "file", "size (KB)", "precision", "max abs diff", "cosine (min)", "top-1 agreement",
             "median ms", "p90 ms"]]
    backend = []
    for t, r in result["targets"].items():
        if r["status"] == "failed":
            rows.append([t, "—", "—", "—", "export failed", "", "", "", ""])
            backend.append(f"- **{t}**: export failed — {r['error'].splitlines()[0]}")
            continue
        p = r.get("parity") or {}
        lat = r.get("latency_ms") or {}
        rows.append([t, f"`{r['file']}`", f"{r['bytes'] / 1024:.0f}", r["precision"], _fmt(p.get("max_abs_diff"), ".2e"),
                     _fmt(p.get("cosine"), ".6f"), _fmt(p.get("top1_agreement"), ".4f"),
                     _fmt(lat.get("median"), ".2f"), _fmt(lat.get("p90"), ".2f")])
        line = f"- **{t}** ({r['runtime']}): {r['summary']}"
        if r.get("note"):
            line += f". {r['note']}"
        if r["status"] == "parity failed":
            line += f". **Parity outside tolerance**: {'; '.join(p.get('failures') or [])}"
        for fb in (r.get("runtime_info") or {}).get("fallbacks", []):
            line += f". Fallback: {fb}"
        backend.append(line)
    lat = next((r["latency_ms"] for r in result["targets"].values() if r.get("latency_ms")), {})
    first = "; ".join(f'"{x}"' for x in labels[:5]) + ("; ..." if len(labels) > 5 else "")
    lines = [
        f"# {manifest['name']} (pocketvit bundle)", "",
        f"What it is: {prov['description']}.", "",
        f"- Exported from: `{prov['model']}` with `pocketvit export` ({manifest['created_with']}).",
        f"- Parameters: {prov['params']:,}.",
        f"- Weights: {prov['weights']}.",
        f"- Licence of the weights: {prov['license']}.",
        f"- Task: {manifest['task']}, {len(labels)} classes ({first}); the float files output logits, drop-in files probabilities.",
    ]
    lines += [f"- Note: {n}." for n in result.get("notes", [])]
    lines += [
        "", "## Measured right after export", "",
        *_table(rows), "",
        f"Parity: each file run on its own runtime through pocketvit.runtime against eager torch (rebuilt from "
        f"this bundle's `source` block and `{REFERENCE_WEIGHTS}`), on {result['parity_inputs']} seeded "
        "random images through the bundle's preprocessing; max abs diff over all logits, the smallest per-image "
        f"cosine, top-1 agreement. Latency: batch 1, {lat.get('threads', '?')} thread(s), median and p90 of "
        f"{lat.get('runs', result['latency_runs'])} runs after {lat.get('warmup', '?')} warm-up calls, "
        f"{lat.get('method', '?')} method (as `pocketvit bench` times), on the machine that exported it. Re-check any "
        "time with `pocketvit verify <bundle>` and `pocketvit bench <bundle>`.", "",
        "## What each backend took", "", *backend, "",
        *dropin_card_lines(manifest),
        "## Input contract", "",
        f"{spec['channels']}-channel {spec['color_order']} image, resize {spec.get('resize')} "
        f"({spec.get('interpolation', 'bilinear')}), centre crop {spec.get('crop')}, pixel x {spec.get('scale', 1 / 255):.6g}, "
        f"mean {spec.get('mean')}, std {spec.get('std')}, layout {spec.get('layout', 'NCHW')}.", "",
        "```json", json.dumps(spec, indent=2), "```", "",
        "Load it without torch: `from pocketvit.runtime import load; p = load(\"<bundle>\", target=\"onnx\"); "
        "p.predict(image)`; manifest.json lists the files and their sha256.", "",
    ]
    return "\n".join(lines)
