"""One line per target on what its toolchain made of the model (delegate calls, ops left outside, rewrites),
from `ExportedFile.info`: for the export model card, the build report and `pocketvit export`'s output."""

from __future__ import annotations

import json
from typing import Any


def _ops_text(counts: dict[str, int], limit: int = 12) -> str:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{op} x{n}" for op, n in items[:limit])
    if len(items) > limit:
        text += f", ... ({len(items) - limit} more)"
    return text


def short_op(name: str) -> str:
    """'aten.native_layer_norm.default' -> 'native_layer_norm' (what a reader scans for)."""
    parts = name.split(".")
    if parts[0] in ("aten", "dim_order_ops", "quantized_decomposed") and len(parts) >= 2:
        return parts[1]
    return name


# ExportedFile.info keys that go into the manifest's metrics (ExecuTorch delegation, LiteRT's from litert_graph.py)
BACKEND_FACTS = ("delegate_calls", "nodes_delegated", "nodes_outside", "outside_ops", "ops", "ops_delegated",
                 "ops_outside", "transposes", "rewrites", "before_rewrites")


def _litert_delegation(info: dict[str, Any]) -> str:
    """'N op(s), K XNNPACK delegate call(s), M op(s) outside (...), T TRANSPOSE' (export/litert_graph.py)."""
    text = f"{sum((info.get('ops') or {}).values())} op(s)"
    if "delegate_calls" not in info:
        return text
    outside = info.get("outside_ops") or {}
    return (text + f", {info['delegate_calls']} XNNPACK delegate call(s), {info.get('ops_outside', 0)} op(s) outside"
            + (f" ({_ops_text(outside, 6)})" if outside else " (whole graph delegated)")
            + f", {info.get('transposes', 0)} TRANSPOSE")


def backend_summary(target: str, info: dict[str, Any]) -> str:
    """One line: what the target's toolchain made of the model (from ExportedFile.info)."""
    runtime = target.split("-", 1)[0]
    if runtime == "executorch":
        outside = info.get("outside_ops") or {}
        grouped: dict[str, int] = {}
        for op, n in outside.items():
            grouped[short_op(op)] = grouped.get(short_op(op), 0) + int(n)
        text = (f"{info.get('delegate_calls', '?')} XNNPACK delegate call(s), {info.get('nodes_delegated', '?')} "
                f"node(s) delegated, {info.get('nodes_outside', 0)} outside")
        text += f": {_ops_text(grouped)}" if grouped else " (whole graph delegated)"
        if info.get("rewrites"):
            text += f"; rewrites {', '.join(f'{k} x{v}' for k, v in info['rewrites'].items())}"
        before = info.get("before_rewrites")
        if before:
            text += (f" (without them: {before['delegate_calls']} call(s), {before['nodes_outside']} outside"
                     + (f": {_ops_text({short_op(k): v for k, v in before['outside_ops'].items()})}"
                        if before["outside_ops"] else "") + ")")
        return text
    if runtime == "litert":
        ops = info.get("ops") or {}
        if not ops:
            return "LiteRT flatbuffer" + (f" ({info['describe_error']})" if info.get("describe_error") else "")
        text = f"{_litert_delegation(info)}: {_ops_text(ops)}"
        if info.get("rewrites"):
            text += f"; rewrites {', '.join(f'{k} x{v}' for k, v in info['rewrites'].items())}"
        before = info.get("before_rewrites")
        if before and before.get("error"):
            text += f" (without them the conversion fails: {before['error']})"
        elif before:
            text += f" (without them: {_litert_delegation(before)})"
        return text
    if runtime == "onnx":
        ops = info.get("ops") or {}
        text = f"opset {info.get('opset', '?')}, {info.get('nodes', '?')} node(s)"
        if info.get("exporter"):
            text += f" via {info['exporter']}"
        return text + (f": {_ops_text(ops, 8)}" if ops else "")
    if runtime == "coreml":
        check = info.get("spec_check") or {}
        ok = check.get("ok")
        text = f"ML Program via {info.get('frontend', '?')}, spec check {'ok' if ok else 'FAILED' if ok is False else '?'}"
        if info.get("fallback_reason"):
            text += f" (torch.export failed: {info['fallback_reason']})"
        if info.get("rewrites"):
            text += f"; rewrites {', '.join(f'{k} x{v}' for k, v in info['rewrites'].items())}"
        return text + "; not executable on Linux (Core ML runs on macOS/iOS only)"
    return json.dumps(info)[:200]
