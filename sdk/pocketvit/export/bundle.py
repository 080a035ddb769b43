"""Write a bundle from exported files; export a model to every requested target as one bundle.

    from pocketvit.export.bundle import write_bundle_dir, export_to_bundle
    write_bundle_dir(out, name=..., files=[ExportedFile, ...], labels=..., input_spec=..., source=...,
                     reference_weights=Path("weights.safetensors"))
    result = export_to_bundle(resolved_model, ["onnx", "executorch"], out)   # `pocketvit export`

`write_bundle_dir` is what both `pocketvit build` (report.write_bundle) and `pocketvit export` use:
model files are copied (or moved) in under temporary names and renamed into place, the reference
weights go to reference/weights.safetensors, the manifest (sha256 of every file) is written last and
atomically, the README.md model card beside it; files a previous manifest listed that the new one does
not are removed.

`export_to_bundle` lowers the model to each target, writes the bundle with the targets that worked, then
measures each executable target right away on its own runtime through the bundle (pocketvit.runtime):
parity against eager torch rebuilt from the bundle's `source` block on 16 seeded random images
(pocketvit.bench.parity, the same check as `pocketvit verify`), and batch-1 latency (median, p90). The
figures go into the manifest's `metrics` and the model card. A target whose lowering fails is reported
(with the ExportError text) and left out; the caller decides the exit status.

Importing this module is instant: torch and the toolchains are imported inside the functions.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocketvit.errors import BundleError, ExportError, MissingExtraError, PocketVitError
from pocketvit.export._common import TARGETS, ExportedFile

if TYPE_CHECKING:  # pragma: no cover
    from pocketvit.models.sources import ResolvedModel

REFERENCE_WEIGHTS = "reference/weights.safetensors"
CARD = "README.md"
MANIFEST = "manifest.json"
PARITY_INPUTS = 16
LATENCY_RUNS = 20
COREML_NOTE = "converted and spec-checked; Core ML runs on macOS/iOS only, not run here"


# --------------------------------------------------------------------------- writing a bundle


def bundle_file_name(target: str, src: Path) -> str:
    """model.pte for 'executorch', model-int8.pte for 'executorch-int8' (every target gets its own name)."""
    src = Path(src)
    if "-" not in target:
        return src.name
    suffix = target.split("-", 1)[1]
    return src.name if src.stem.endswith(f"-{suffix}") else f"{src.stem}-{suffix}{src.suffix}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def place(src: Path, dst: Path, move: bool = False) -> None:
    """Copy (or move) a file or an .mlpackage folder to dst through a temporary name, then rename it in."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        if move:
            shutil.move(str(src), str(tmp))
        elif src.is_dir():
            shutil.copytree(src, tmp)
        else:
            shutil.copy2(src, tmp)
        if dst.is_dir() and not dst.is_symlink():
            old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(dst, old)
            os.replace(tmp, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if tmp.is_dir() and dst.exists():
                dst.unlink()
            os.replace(tmp, dst)
    finally:
        if tmp.exists():
            _remove(tmp)


def _old_paths(bundle: Path) -> set[str]:
    """Paths the bundle's current manifest lists (to prune those the new one drops)."""
    try:
        m = json.loads((bundle / MANIFEST).read_text(encoding="utf-8"))
        return {e["path"] for e in m.get("files", {}).values() if isinstance(e, dict) and isinstance(e.get("path"), str)}
    except (OSError, ValueError, AttributeError):
        return set()


def _prune(bundle: Path, stale: Iterable[str]) -> None:
    root = bundle.resolve()
    for rel in stale:
        p = (bundle / rel)
        try:
            resolved = p.resolve()
        except OSError:
            continue
        if root in resolved.parents and (p.exists() or p.is_symlink()):
            _remove(p)


def write_bundle_dir(
    bundle_dir: Path | str,
    *,
    name: str,
    files: Iterable[ExportedFile],
    labels: list[str],
    input_spec: dict[str, Any],
    source: dict[str, Any],
    reference_weights: Path | str,
    task: str = "classify",
    outputs: str = "logits",
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    card: str | Callable[[dict[str, Any]], str] | None = None,
    move: bool = False,
) -> dict[str, Any]:
    """Write (or refresh) a bundle folder; returns the manifest written.

    files: one ExportedFile per target (its `path` is copied in, or moved with move=True, under
    `bundle_file_name`). reference_weights: the eager model's safetensors (for verify/bench), placed at
    source["weights"]. card: the README.md text, or a function of the manifest that renders it.
    """
    from pocketvit import __version__
    from pocketvit.runtime import atomic_write_bytes, file_entry, write_manifest

    bundle = Path(bundle_dir)
    bundle.mkdir(parents=True, exist_ok=True)
    previous = _old_paths(bundle)
    entries: dict[str, Any] = {}
    license = ((extra or {}).get("provenance") or {}).get("license")
    for f in files:
        dst_name = bundle_file_name(f.target, f.path)
        place(f.path, bundle / dst_name, move=move)
        info = f.info or {}
        form = info.get("input_form", "float-nchw")
        # a drop-in file's own contract: manifest keys "outputs" and "input" from info "file_outputs" / "file_input"
        own = {k: info[f"file_{k}"] for k in ("outputs", "input") if info.get(f"file_{k}")}
        _embed_metadata(bundle / dst_name, f, info, spec=input_spec, labels=labels, name=name, task=task,
                        license=license, outputs=own.get("outputs", outputs))
        entries[f.target] = file_entry(bundle, f.target, dst_name, f.runtime, f.precision, input_form=form, **own)
    if not entries:
        raise BundleError(f"{bundle}: no model file to put in the bundle")
    source = {**source, "weights": source.get("weights", REFERENCE_WEIGHTS)}
    place(Path(reference_weights), bundle / source["weights"], move=move)
    manifest: dict[str, Any] = {
        "name": name, "task": task, "labels": list(labels), "input": input_spec, "outputs": outputs,
        "files": entries, "source": source, "exits": [], "metrics": metrics or {},
        "created_with": f"pocketvit {__version__}",
    }
    manifest.update(extra or {})
    if card is not None:
        text = card(manifest) if callable(card) else card
        atomic_write_bytes(bundle / CARD, text.encode("utf-8"))
    write_manifest(bundle, manifest)
    _prune(bundle, previous - {e["path"] for e in entries.values()})
    return manifest


def _embed_metadata(path: Path, f: ExportedFile, info: dict[str, Any], *, spec: dict[str, Any], labels: list[str],
                    name: str, task: str, license: str | None, outputs: str) -> None:
    """Labels and the image contract inside the model file, for apps that read the file alone: ONNX
    metadata_props on every .onnx, TFLite metadata on a LiteRT drop-in file (export/metadata.py)."""
    from pocketvit.export.dropin import is_dropin
    from pocketvit.export.metadata import write_onnx_metadata, write_tflite_metadata

    form = info.get("input_form", "float-nchw")
    own_spec = {**spec, **(info.get("file_input") or {})}
    if f.runtime == "onnx":
        try:
            info["metadata"] = write_onnx_metadata(path, spec=own_spec, labels=labels, name=name, license=license,
                                                   input_form=form, outputs=outputs)
        except MissingExtraError as e:  # onnxruntime without the onnx package: the file works without it
            info["metadata"] = {"written": False, "reason": str(e)}
        except Exception as e:  # noqa: BLE001 - a file onnx cannot parse keeps working as it is (the runtime decides)
            info["metadata"] = {"written": False, "reason": f"onnx could not read the file: {type(e).__name__}"}
    elif f.runtime == "litert" and is_dropin(f.target) and not (info.get("metadata") or {}).get("written"):
        info["metadata"] = write_tflite_metadata(path, spec=spec, labels=labels, name=name, license=license,
                                                 input_form=form, task=task)


def refresh_manifest(bundle_dir: Path | str, manifest: dict[str, Any], card: str | None = None) -> None:
    """Rewrite manifest.json (and the card) of a bundle whose files are already in place, e.g. with metrics."""
    from pocketvit.runtime import atomic_write_bytes, write_manifest

    bundle = Path(bundle_dir)
    if card is not None:
        atomic_write_bytes(bundle / CARD, card.encode("utf-8"))
    write_manifest(bundle, manifest)


# --------------------------------------------------------------------------- the output folder


_BUNDLE_NAMES = {MANIFEST, CARD, "reference"}


def check_out_dir(out: Path) -> None:
    """Refuse to write into a folder that holds something other than a pocketvit bundle."""
    if out.exists() and not out.is_dir():
        raise BundleError(f"--out {out} is a file; pass a folder for the bundle")
    if not out.is_dir() or (out / MANIFEST).is_file():
        return
    foreign = [p.name for p in out.iterdir()
               if not p.name.startswith(".") and p.name not in _BUNDLE_NAMES and not p.name.startswith("model")]
    if foreign:
        shown = ", ".join(sorted(foreign)[:3]) + (", ..." if len(foreign) > 3 else "")
        raise BundleError(f"--out {out} is not empty and is not a pocketvit bundle (it holds {shown}); choose an "
                          "empty or new folder")


# --------------------------------------------------------------------------- what each backend took


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
        if info.get("before_rewrites"):
            text += f" (without them: {_litert_delegation(info['before_rewrites'])})"
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
        return text + "; not executable on Linux (Core ML runs on macOS/iOS only)"
    return json.dumps(info)[:200]


# --------------------------------------------------------------------------- measuring the bundle


def measure_bundle(bundle_dir: Path | str, targets: list[str], n_inputs: int = PARITY_INPUTS,
                   runs: int = LATENCY_RUNS, threads: int | None = None) -> dict[str, dict[str, Any]]:
    """Parity vs eager torch (n_inputs seeded random images) and batch-1 latency for each target."""
    import numpy as np

    from pocketvit.bench.latency import default_threads, interleaved
    from pocketvit.bench.parity import verify_bundle
    from pocketvit.runtime import load

    threads = int(threads or default_threads())
    ver = verify_bundle(bundle_dir, targets, n_inputs=n_inputs, seed=0, threads=threads)
    out: dict[str, dict[str, Any]] = {}
    runners: dict[str, Callable[[], Any]] = {}
    opened = []
    rng = np.random.default_rng(0)
    try:
        for t in targets:
            row = ver["targets"][t]
            entry: dict[str, Any] = {"status": row["status"], "note": row.get("note")}
            if row["status"] != "not run":
                entry["parity"] = {"inputs": n_inputs, "max_abs_diff": row["max_abs_diff"], "cosine": row["cosine"],
                                   "top1_agreement": row["top1_agreement"], "tolerance": row["tolerance"],
                                   "failures": row["failures"]}
                p = load(bundle_dir, target=t, num_threads=threads, warmup=0, use_exits=False)
                opened.append(p)
                spec = p.input_spec
                image = rng.integers(0, 256, (spec["height"], spec["width"], spec["channels"]), dtype=np.uint8)
                x = p.preprocess(image, input_color="GRAY" if spec["channels"] == 1 else "RGB")
                runners[t] = lambda p=p, x=x: p.run(x)
            out[t] = entry
        if runners:
            times = interleaved(runners, runs, warmup=3)
            for t, ms in times.items():
                out[t]["latency_ms"] = {"median": float(np.median(ms)), "p90": float(np.percentile(ms, 90)),
                                        "runs": runs, "threads": threads, "batch": 1}
    finally:
        for p in opened:
            p.close()
    return out


# --------------------------------------------------------------------------- export → bundle


def export_to_bundle(
    resolved: ResolvedModel,
    targets: list[str],
    out_dir: Path | str,
    *,
    n_inputs: int = PARITY_INPUTS,
    latency_runs: int = LATENCY_RUNS,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
    dropin: Iterable[str] | None = None,
    dropin_input: str = "uint8",
    quantize: Callable[..., Iterable[tuple[str, Any, dict[str, Any]]]] | None = None,
    disabled_rewrites: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Export `resolved.model` to every target, write ONE bundle with those that worked, measure them.

    dropin: runtimes that also get a drop-in file (export/dropin.py: NHWC pixels in, normalization and
    softmax inside, target '<runtime>-dropin'; Core ML: image input + classifier); None: LiteRT's and Core
    ML's, for those among the targets.
    dropin_input: 'uint8' or 'float' pixels.
    quantize: export/quantize/cli_support.int8_exporter(...): adds '<target>-int8' files beside the fp32 ones.

    Returns a JSON-able result: {model, name, bundle, input, provenance, targets: {t: {status, file,
    bytes, runtime, precision, seconds, backend, summary, parity, latency_ms, error}}, failed: {t: message},
    parity_failed: [t]}. Raises ExportError only when no target could be exported (nothing written).
    """
    from pocketvit.export import export_model
    from pocketvit.export.dropin import export_dropin

    say = log or (lambda _m: None)
    out = Path(out_dir)
    check_out_dir(out)
    for t in targets:
        if t not in TARGETS:
            raise ExportError(f"Unknown export target '{t}'. Choose from: {', '.join(TARGETS)} (or all).")
    from pocketvit.export.dropin import DEFAULT_DROPIN, DROPIN_RUNTIMES, INPUT_DTYPES, dropin_target

    dropin = [r for r in (DEFAULT_DROPIN if dropin is None else dropin) if dropin is not None or r in targets]
    for r in dropin:
        if r not in DROPIN_RUNTIMES:
            raise ExportError(f"--dropin {r}: drop-in files exist for {', '.join(DROPIN_RUNTIMES)}")
    if dropin_input not in INPUT_DTYPES:
        raise ExportError(f"--dropin-input must be one of {', '.join(INPUT_DTYPES)}, got {dropin_input!r}")
    all_targets = list(targets) + [dropin_target(r) for r in dropin]
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".export-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    results: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    exported: list[ExportedFile] = []
    try:
        example = resolved.example()
        jobs = [(t, f"exporting {resolved.name} to {t} ...",
                 lambda t=t: export_model(resolved.model, example, t, staging, name="model", model_name=resolved.name,
                                          disabled_rewrites=disabled_rewrites, compare_rewrites=True))
                for t in targets]
        jobs += [(dropin_target(r), (f"exporting {resolved.name} to {dropin_target(r)} (NHWC {dropin_input} pixels "
                                     "in, normalization inside) ..."),
                  lambda r=r: export_dropin(resolved.model, resolved.input, r, staging, input_dtype=dropin_input,
                                            labels=resolved.labels, model_name=resolved.name))
                 for r in dropin]
        for t, message, job in jobs:
            say(message)
            t0 = time.perf_counter()
            try:
                f = job()
            except (ExportError, MissingExtraError) as e:
                failed[t] = str(e)
                results[t] = {"status": "failed", "error": str(e), "seconds": round(time.perf_counter() - t0, 2)}
                say(f"  {t}: failed after {results[t]['seconds']:.1f} s")
                continue
            exported.append(f)
            results[t] = {"status": "exported", "runtime": f.runtime, "precision": f.precision,
                          "seconds": round(time.perf_counter() - t0, 2), "backend": f.info,
                          "summary": backend_summary(t, f.info)}
            say(f"  {t}: done in {results[t]['seconds']:.1f} s")
        for t, f, row in (quantize(resolved, list(targets), staging, say) if quantize else ()):
            all_targets.append(t)
            results[t] = row
            if f is None:
                failed[t] = row["error"]
            else:
                exported.append(f)
        if not exported:
            raise ExportError(f"Could not export '{resolved.name}' to any target; nothing was written.\n"
                              + "\n".join(f"- {t}: {msg}" for t, msg in failed.items()))
        weights = staging / "weights.safetensors"
        _save_reference(resolved.model, weights)
        manifest = write_bundle_dir(
            out, name=resolved.name, files=exported, labels=resolved.labels, input_spec=resolved.input,
            source=resolved.source, reference_weights=weights, extra={"provenance": resolved.provenance()},
            move=True,
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)

    ok = [f.target for f in exported]
    for t in ok:
        entry = manifest["files"][t]
        results[t].update(file=entry["path"], bytes=entry["bytes"])
    say(f"checking {', '.join(ok)} on their runtimes: {n_inputs} inputs vs eager torch, latency ...")
    try:
        measured = measure_bundle(out, ok, n_inputs=n_inputs, runs=latency_runs, threads=threads)
    except PocketVitError as e:  # the bundle is written; say why it could not be measured
        measured = {t: {"status": "not run", "note": f"not measured: {str(e).splitlines()[0]}"} for t in ok}
    for t, m in measured.items():
        results[t].update(m)
        results[t]["status"] = {"pass": "ok", "fail": "parity failed", "not run": "not run"}[m["status"]]
        if m["status"] == "not run" and manifest["files"][t]["runtime"] == "coreml":
            results[t]["note"] = COREML_NOTE
    manifest["metrics"] = {t: {"parity": results[t].get("parity"), "latency_ms": results[t].get("latency_ms")}
                           for t in ok}
    for t in ok:  # what each backend took, as `export` prints it (delegate calls, ops outside, rewrites)
        info = results[t].get("backend") or {}
        manifest["metrics"][t]["backend"] = {"summary": results[t].get("summary"),
                                             **{k: info[k] for k in BACKEND_FACTS if k in info}}
    result = {
        "model": resolved.spec, "name": resolved.name, "bundle": str(out), "input": resolved.input,
        "labels": len(resolved.labels), "provenance": resolved.provenance(), "notes": list(resolved.notes),
        "targets": {t: results[t] for t in all_targets}, "failed": failed,
        "parity_failed": [t for t in ok if results[t]["status"] == "parity failed"],
        "parity_inputs": n_inputs, "latency_runs": latency_runs,
    }
    refresh_manifest(out, manifest, card=render_export_card(result, manifest))
    return result


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
                             "embedder TFLite metadata: name, version, normalization, RGB colour space, when the "
                             "bundle was written with the tflite-support tool environment, `make tools-venv`); "
                             "compare its embedding by cosine with the rows of the bundle's text embeddings.")
            else:
                lines.append("  MediaPipe Tasks `ImageClassifier` / the TFLite Task Library load it as it is; label "
                             "names come from its TFLite metadata (name, version, labels, normalization, RGB colour "
                             "space) when the bundle was written with the tflite-support tool environment "
                             "(`make tools-venv`).")
    if onnx:
        lines.append(f"- **{', '.join(onnx)}**: the .onnx carries `metadata_props` `labels` (JSON list), "
                     "`preprocessing` (this input contract as JSON), `input_form` and `outputs`.")
    return lines + [""]


def _save_reference(model: Any, path: Path) -> None:
    from safetensors.torch import save_file

    # clone: safetensors refuses tensors that share storage (tied weights); loading does not care.
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))


# --------------------------------------------------------------------------- the model card


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
        backend.append(line)
    threads = next((r["latency_ms"]["threads"] for r in result["targets"].values() if r.get("latency_ms")), None)
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
        f"this bundle's `source` block and `{REFERENCE_WEIGHTS}`), on {result.get('parity_inputs', PARITY_INPUTS)} seeded "
        "random images through the bundle's preprocessing; max abs diff over all logits, the smallest per-image "
        f"cosine, top-1 agreement. Latency: batch 1, {threads or '?'} thread(s), median and p90 of "
        f"{result.get('latency_runs', LATENCY_RUNS)} interleaved runs after warm-up, on the machine that exported it. Re-check any time with "
        "`pocketvit verify <bundle>` and `pocketvit bench <bundle>`.", "",
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


__all__ = [
    "backend_summary", "bundle_file_name", "check_out_dir", "export_to_bundle", "measure_bundle",
    "place", "refresh_manifest", "render_export_card", "write_bundle_dir",
]
