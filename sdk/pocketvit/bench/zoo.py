"""`pocketvit bench-zoo`: ImageNet-size timm models, raw toolchain exports vs pocketvit's, one run each.

Per model (random weights, BatchNorm statistics re-estimated first, see TOOLCHAINS.md; weights do
not change speed): export
- ``executorch-raw``: the toolchain's plain path (timm's fused attention, no rewrites),
- ``executorch``: pocketvit's export (non-fused attention + every rewrite in export/rewrites.py),
- ``litert-raw``: litert-torch's plain conversion (no rewrites); ``litert``: pocketvit's (LiteRT rewrites),
- ``onnx``: pocketvit's export (ONNX takes no rewrites today),
- ``executorch-int8``, ``litert-int8``: PT2E static int8 (calibrated on random images; speed only),
then time eager torch and every file in ONE interleaved run (batch 1, same threads, medians; see
bench/latency.py) and check parity of the fp32 files against eager on the same 16 inputs.
Writes DIR/zoo.json, DIR/zoo.md and DIR/zoo.png (latency relative to ONNX Runtime).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pocketvit.runtime.io import atomic_path, write_json

ZOO = (
    "deit_tiny_patch16_224",
    "tiny_vit_5m_224",
    "fastvit_t8",
    "fastvit_mci0",
    "convnext_atto",
    "mobilenetv3_large_100",
    "efficientnet_b0",
    "resnet18",
)
FP32 = ("executorch-raw", "executorch", "litert-raw", "litert", "onnx")
INT8 = ("executorch-int8", "litert-int8")
PARITY_INPUTS = 16


def _export_all(model, example, calib, work: Path, name: str, int8: bool, say) -> dict[str, Any]:
    """{variant: ExportedFile or error string}."""
    from pocketvit.errors import ExportError, MissingExtraError
    from pocketvit.export import export_model
    from pocketvit.export.executorch import export_executorch
    from pocketvit.export.litert import export_litert

    jobs: dict[str, Callable[[], Any]] = {
        "executorch-raw": lambda: export_executorch(model, example, work / "raw.pte", model_name=name,
                                                    unfused_attention=False, disabled_rewrites=("all",)),
        "executorch": lambda: export_model(model, example, "executorch", work, name="model", model_name=name),
        "litert-raw": lambda: export_litert(model, example, work / "raw.tflite", model_name=name,
                                            disabled_rewrites=("all",)),
        "litert": lambda: export_model(model, example, "litert", work, name="model", model_name=name),
        "onnx": lambda: export_model(model, example, "onnx", work, name="model", model_name=name),
    }
    if int8:
        from pocketvit.export.quantize import config_for, quantize_export

        for t, ext in (("executorch-int8", ".pte"), ("litert-int8", ".tflite")):
            jobs[t] = (lambda t=t, ext=ext: quantize_export(model, example, calib, config_for(t),
                                                            work / f"int8{ext}", model_name=name))
    out: dict[str, Any] = {}
    for variant, job in jobs.items():
        say(f"  {name}: exporting {variant} ...")
        try:
            out[variant] = job()
        except (ExportError, MissingExtraError) as e:
            out[variant] = str(e).splitlines()[0]
    return out


def _no_zero_gammas(model) -> int:
    """Set to 1 the BatchNorm scales that timm initialises to zero (last BN of each residual branch): with
    them at 0 litert-torch folds whole branches away (ResNet-18: 4 of 20 convs left) and times a smaller net."""
    import torch

    count = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.weight is not None and not m.weight.any():
                m.weight.fill_(1.0)
                count += 1
    return count


def backend_runner(runtime: str, path: str, threads: int, x: np.ndarray) -> Callable[[], Any]:
    from pocketvit.runtime.backends import open_backend

    b = open_backend(runtime, path, num_threads=threads)
    return lambda: b.run(x)


def _eager_runner(name: str, size: int, threads: int, x: np.ndarray) -> Callable[[], Any]:
    import torch

    torch.set_num_threads(threads)
    model = zoo_model(name, size)
    xt = torch.from_numpy(x)

    def eager():
        with torch.no_grad():
            model(xt)

    return eager


def zoo_model(name: str, size: int = 224):
    """timm model `name` with random weights (seed 0), eval, BatchNorm statistics re-estimated on random inputs."""
    import timm
    import torch

    from pocketvit.export.prepare import recalibrate_batchnorm

    torch.manual_seed(0)
    torch.set_flush_denormal(True)  # the runtimes flush denormals; random-weight activations can be denormal
    try:  # ViTs fix their input size at build time; convnets take any
        model = timm.create_model(name, pretrained=False, num_classes=1000, **({"img_size": size} if size != 224 else {}))
    except TypeError:
        model = timm.create_model(name, pretrained=False, num_classes=1000)
    model.eval()
    _no_zero_gammas(model)
    recalibrate_batchnorm(model, (8, 3, size, size))
    return model


def zoo_inputs(name: str, size: int = 224):
    """(zoo_model, the PARITY_INPUTS seeded parity images, 32 random calibration images drawn after them, eager
    logits on the parity images): what bench-zoo and the A/B tools export, calibrate and compare with."""
    import torch

    model = zoo_model(name, size)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(PARITY_INPUTS, 3, size, size, generator=g)
    calib = torch.randn(32, 3, size, size, generator=g)
    with torch.no_grad():
        ref = model(x).numpy()
    return model, x, calib, ref


def bench_model(name: str, work: Path, *, size: int = 224, runs: int = 50, threads: int = 2, int8: bool = True,
                say: Callable[[str], None] = lambda _m: None, method: str = "auto") -> dict[str, Any]:
    import torch

    from pocketvit.bench.latency import choose_method, latency_stats, time_runners
    from pocketvit.bench.measure import parity
    from pocketvit.runtime.backends import open_backend

    torch.set_num_threads(threads)
    model, x, calib, ref = zoo_inputs(name, size)
    example = x[:1]
    work.mkdir(parents=True, exist_ok=True)
    files = _export_all(model, example, calib, work, name, int8, say)
    row: dict[str, Any] = {"model": name, "input": [1, 3, size, size], "variants": {}}
    timed = []
    for variant, f in files.items():
        if isinstance(f, str):
            row["variants"][variant] = {"status": "export failed", "error": f}
            continue
        info = f.info
        entry = {"status": "ok", "bytes": f.path.stat().st_size}
        if variant.startswith("executorch"):
            entry |= {k: info.get(k) for k in ("delegate_calls", "nodes_outside", "outside_ops", "rewrites")}
        if variant.startswith("litert"):  # export/litert_graph.py
            entry |= {k: info.get(k) for k in ("ops", "delegate_calls", "ops_outside", "outside_ops", "transposes",
                                               "rewrites")}
        b = open_backend(f.runtime, f.path, num_threads=threads)
        entry["parity"] = parity(b.run(x.numpy()), ref)  # int8: how far it moved (random weights exaggerate it)
        b.close()
        timed.append(variant)
        row["variants"][variant] = entry
    x1 = example.numpy()
    factories = {v: functools.partial(backend_runner, files[v].runtime, str(files[v].path), threads, x1)
                 for v in timed}
    factories["eager"] = functools.partial(_eager_runner, name, size, threads, x1)
    method = choose_method(method, threads)
    say(f"  {name}: timing {', '.join(factories)} ({runs} calls each, {method})")
    times = time_runners(factories, runs, 3, threads, method)
    row["method"] = method
    onnx_ms = float(np.median(times["onnx"])) if "onnx" in times else None
    for v, ms in times.items():
        stats = latency_stats(ms)
        if onnx_ms:
            stats["vs_onnx"] = stats["median_ms"] / onnx_ms
        row["variants"].setdefault(v, {"status": "ok"})["latency"] = stats
    return row


def write_zoo(rows: list[dict[str, Any]], out: Path, meta: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "zoo.json", {"meta": meta, "models": rows})
    cols = ["eager", *FP32, *INT8]
    lines = ["| model | " + " | ".join(cols) + " | ExecuTorch calls / outside (raw → pocketvit) | fp32 max abs diff |",
             "|---|" + "---|" * (len(cols) + 2)]
    for r in rows:
        cells = []
        for c in cols:
            v = r["variants"].get(c, {})
            lat = v.get("latency")
            if lat:
                cells.append(f"{lat['median_ms']:.1f} ({lat.get('vs_onnx', float('nan')):.2f}x)")
            else:
                cells.append("fails" if v.get("status") == "export failed" else "—")
        raw, ours = r["variants"].get("executorch-raw", {}), r["variants"].get("executorch", {})
        deleg = (f"{raw.get('delegate_calls', '?')} / {raw.get('nodes_outside', '?')} → "
                 f"{ours.get('delegate_calls', '?')} / {ours.get('nodes_outside', '?')}")
        diffs = [r["variants"][v]["parity"]["max_abs_diff"] for v in FP32 if "parity" in r["variants"].get(v, {})]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + f" | {deleg} | {max(diffs):.1e} |" if diffs
                     else f"| {r['model']} | " + " | ".join(cells) + f" | {deleg} | — |")
    how = {"isolated": "each runtime in its own process, blocks of calls in turn",
           "interleaved": "interleaved rounds in one process"}.get(meta.get("method", "interleaved"))
    text = (f"Median ms, batch 1, {meta['threads']} threads, {meta['runs']} calls per runtime per model ({how}) "
            f"(ratio to ONNX Runtime in brackets); fp32 max abs diff: largest over executorch-raw, executorch, "
            f"litert-raw, litert, onnx vs eager on {PARITY_INPUTS} inputs.\n\n" + "\n".join(lines) + "\n")
    int8_rows = [(r["model"], v, r["variants"][v]["parity"]["top1_agreement"]) for r in rows for v in INT8
                 if "parity" in r["variants"].get(v, {})]
    if int8_rows:
        text += ("\nint8 top-1 agreement with eager fp32 on the same inputs (random weights and random calibration: "
                 "speed only, accuracy is measured on real data by `pocketvit build`): "
                 + ", ".join(f"{m} {v} {a:.2f}" for m, v, a in int8_rows) + "\n")
    failures = [(r["model"], v, e["error"]) for r in rows for v, e in r["variants"].items()
                if e.get("status") == "export failed"]
    if failures:
        text += "\nExport failures:\n" + "".join(f"- {m} {v}: {err}\n" for m, v, err in failures)
    with atomic_path(out / "zoo.md") as tmp:
        tmp.write_text(text)
    _plot(rows, out / "zoo.png")


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = ["executorch-raw", "executorch", "litert-raw", "litert", "executorch-int8", "litert-int8"]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows)), 4))
    width = 0.8 / len(variants)
    for i, v in enumerate(variants):
        vals = [r["variants"].get(v, {}).get("latency", {}).get("vs_onnx", np.nan) for r in rows]
        ax.bar(np.arange(len(rows)) + i * width, vals, width, label=v)
    ax.axhline(1.0, color="k", lw=1, ls="--")
    ax.set_xticks(np.arange(len(rows)) + 0.4 - width / 2)
    ax.set_xticklabels([r["model"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("median latency / ONNX Runtime")
    ax.set_title("batch-1 latency relative to ONNX Runtime (lower is faster)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def bench_zoo(models: list[str], out: Path, *, size: int = 224, runs: int = 50, threads: int = 2,
              int8: bool = True, say: Callable[[str], None] = lambda _m: None, method: str = "auto"
              ) -> list[dict[str, Any]]:
    """Bench every model; the JSON/markdown/plot are rewritten after each model (a killed run keeps what it did)."""
    import platform

    rows = []
    from pocketvit.bench.latency import choose_method

    meta = {"threads": threads, "runs": runs, "size": size, "method": choose_method(method, threads),
            "machine": platform.machine(),
            "processor": platform.processor()}
    for name in models:
        say(f"{name}:")
        rows.append(bench_model(name, out / "files" / name, size=size, runs=runs, threads=threads, int8=int8, say=say,
                                method=method))
        write_zoo(rows, out, meta)
    return rows
