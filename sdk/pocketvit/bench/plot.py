"""Bar chart of a bench result (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pocketvit.bench.latency import PEAK_N, display_name


def _save(fig, path: Path) -> Path:
    """PNG, written atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    from pocketvit.runtime.io import atomic_path

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def bench_plot(result: dict[str, Any], path: str | Path) -> Path:
    """Horizontal bars: median ms per runtime, p90 as a whisker, ratio to ONNX Runtime as a label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    rows = [(k, e) for k, e in result["results"].items() if "median_ms" in e]
    rows.sort(key=lambda kv: kv[1]["median_ms"])
    names = [display_name(k, e) for k, e in rows]
    med = [e["median_ms"] for _, e in rows]
    p90 = [e["p90_ms"] for _, e in rows]
    colors = {"torch": "tab:gray", "onnx": "tab:blue", "executorch": "tab:orange",
              "litert": "tab:green", "coreml": "tab:purple"}
    fig, ax = plt.subplots(figsize=(7.0, 0.55 * max(2, len(rows)) + 1.2))
    y = list(range(len(rows)))
    ax.barh(y, med, color=[colors.get(e["runtime"], "tab:red") for _, e in rows],
            xerr=[[0] * len(rows), [max(0.0, b - a) for a, b in zip(med, p90)]], capsize=3)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    top = max(p90) if p90 else 1.0
    lo = min(med) if med else 1.0
    log = lo > 0 and top / lo > 20
    for i, (_, e) in enumerate(rows):
        r = e.get("ratio_to_onnx")
        label = f"{e['median_ms']:.3g} ms" + (f"  ({r:.2f}x ORT)" if r is not None else "")
        x = max(e["p90_ms"], e["median_ms"])
        ax.text(x * 1.1 if log else x + 0.01 * top, i, label, va="center", fontsize=8)
    if log:  # one slow runtime (often eager torch) would flatten the others to nothing
        ax.set_xscale("log")
        ax.set_xlim(lo / 2, top * 8)
    else:
        ax.set_xlim(0, top * 1.45)
    ax.set_xlabel("median latency, batch 1 (ms" + (", log scale" if log else "") + "); whisker: p90")
    peak = (result.get("machine") or {}).get("peak") or {}
    gf = (result.get("model") or {}).get("gflops")
    sub = f"{result['threads']} thread(s), {result['runs']} interleaved runs"
    if gf is not None:
        sub += f", model {gf * 1e3:.3g} MFLOPs"
    if peak:
        sub += f"\nmachine fp32 peak {peak['gflops_per_s']:.0f} GFLOP/s ({PEAK_N}x{PEAK_N} matmul)"
    ax.set_title(f"{result['name']}: latency per runtime\n{sub}", fontsize=10)
    return _save(fig, path)


def device_plot(result: dict[str, Any], path: str | Path) -> Path:
    """`bench --device`: median ms per runtime, one bar per machine (the device, this machine), p90 as a whisker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    dev = result["device_bench"]["results"]
    local = (result.get("local") or {}).get("results", {})
    d = result["device"]
    machines = [(f"{d['address']}: {d.get('model')}" + (" (emulated)" if d.get("emulated") else ""), dev, "tab:orange")]
    if local:
        here = result["local"]["machine"]
        machines.append((f"this machine ({here.get('machine')}, {here.get('cpu_count')} CPUs)", local, "tab:blue"))
    rows = [t for t, e in dev.items() if "median_ms" in e or "median_ms" in local.get(t, {})]
    fig, ax = plt.subplots(figsize=(7.5, 0.8 * max(2, len(rows)) + 1.4))
    h = 0.8 / len(machines)
    shown = [res[t] for _, res, _ in machines for t in rows if "p90_ms" in res.get(t, {})]
    top = max([1e-9] + [e["p90_ms"] for e in shown])
    lo = min([top] + [e["median_ms"] for e in shown])
    log = lo > 0 and top / lo > 20  # an emulated device (or a slow one) would flatten the other bars to nothing
    for j, (label, res, color) in enumerate(machines):
        ys, med, p90 = [], [], []
        for i, t in enumerate(rows):
            e = res.get(t, {})
            if "median_ms" in e:
                ys.append(i + (j - (len(machines) - 1) / 2) * h)
                med.append(e["median_ms"])
                p90.append(max(e["p90_ms"], e["median_ms"]))
        ax.barh(ys, med, height=h, color=color, label=label,
                xerr=[[0] * len(med), [b - a for a, b in zip(med, p90)]], capsize=3)
        for y, m, q in zip(ys, med, p90):
            ax.text(q * 1.1 if log else q + 0.01 * top, y, f"{m:.3g} ms", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [display_name(t, dev[t]) for t in rows])
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
        ax.set_xlim(lo / 2, top * 8)
    else:
        ax.set_xlim(0, top * 1.35)
    ax.set_xlabel("median latency, batch 1 (ms" + (", log scale" if log else "") + "); whisker: p90")
    ax.legend(fontsize=8, loc="lower right")
    title = f"{result['name']}: latency per runtime per device"
    if d.get("emulated"):
        title += "\nthe device is emulated: its bars time the emulator, not the device"
    ax.set_title(title, fontsize=10)
    return _save(fig, path)
