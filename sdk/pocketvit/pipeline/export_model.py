"""`pocketvit export`: lower a model to every requested target as one bundle, then measure each executable
target right away on its own runtime through the bundle (pocketvit.runtime): parity against eager torch rebuilt
from the bundle's `source` block on 16 seeded random images (the same check as `pocketvit verify`), and batch-1
latency (median, p90). The figures go into the manifest's `metrics` and the model card. A target whose lowering
fails is reported (with the ExportError text) and left out; the caller decides the exit status.

    result = export_to_bundle(resolved_model, ["onnx", "executorch"], out)
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocketvit.errors import ExportError, MissingExtraError, PocketVitError
from pocketvit.export._common import TARGETS, ExportedFile
from pocketvit.export.bundle import (
    check_out_dir,
    refresh_manifest,
    write_bundle_dir,
)
from pocketvit.export.describe import BACKEND_FACTS, backend_summary
from pocketvit.report.export_card import render_export_card

if TYPE_CHECKING:  # pragma: no cover
    from pocketvit.models.sources import ResolvedModel

PARITY_INPUTS = 16
LATENCY_RUNS = 20
COREML_NOTE = "converted and spec-checked; Core ML runs on macOS/iOS only, not run here"


def measure_bundle(bundle_dir: Path | str, targets: list[str], n_inputs: int = PARITY_INPUTS,
                   runs: int = LATENCY_RUNS, threads: int | None = None) -> dict[str, dict[str, Any]]:
    """Parity vs eager torch (n_inputs seeded random images) and batch-1 latency for each target, timed as
    `pocketvit bench` times them (bench/latency.py: isolated processes with more than one thread)."""
    from pocketvit.bench.latency import default_threads, time_targets
    from pocketvit.bench.parity import verify_bundle

    threads = int(threads or default_threads())
    ver = verify_bundle(bundle_dir, targets, n_inputs=n_inputs, seed=0, threads=threads)
    out: dict[str, dict[str, Any]] = {}
    for t in targets:
        row = ver["targets"][t]
        out[t] = {"status": row["status"], "note": row.get("note")}
        if row.get("run_error"):  # its runtime could not load or run it: a failure, nothing to time
            out[t] |= {"run_error": row["run_error"], "parity": {"inputs": n_inputs, "failures": row["failures"]}}
        elif row["status"] != "not run":
            out[t]["parity"] = {"inputs": n_inputs, "max_abs_diff": row["max_abs_diff"], "cosine": row["cosine"],
                                "top1_agreement": row["top1_agreement"], "tolerance": row["tolerance"],
                                "failures": row["failures"]}
            out[t]["runtime_info"] = row.get("runtime_info")
    ran = [t for t in targets if out[t]["status"] != "not run" and not out[t].get("run_error")]
    if ran:
        for t, lat in time_targets(bundle_dir, ran, runs, threads, warmup=3).items():
            out[t]["latency_ms"] = lat
    return out


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
    compare_rewrites: bool = True,
) -> dict[str, Any]:
    """Export `resolved.model` to every target, write ONE bundle with those that worked, measure them.

    dropin: runtimes that also get a drop-in file (export/dropin.py: NHWC pixels in, normalization and
    softmax inside, target '<runtime>-dropin'; Core ML: image input + classifier); None: LiteRT's and Core
    ML's, for those among the targets.
    dropin_input: 'uint8' or 'float' pixels.
    quantize: export/quantize/cli_support.int8_exporter(...): adds '<target>-int8' files beside the fp32 ones.
    compare_rewrites: also lower ExecuTorch / LiteRT without their rewrites, to report what the rewrites bought.

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
                                          disabled_rewrites=disabled_rewrites, compare_rewrites=compare_rewrites))
                for t in targets]
        jobs += [(dropin_target(r), (f"exporting {resolved.name} to {dropin_target(r)} (NHWC {dropin_input} pixels "
                                     "in, normalization inside) ..."),
                  lambda r=r: export_dropin(resolved.model, resolved.input, r, staging, input_dtype=dropin_input,
                                            labels=resolved.labels, model_name=resolved.name,
                                            disabled_rewrites=disabled_rewrites))
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
        failed = works_instead(failed, [f.target for f in exported])
        for t, msg in failed.items():
            results[t]["error"] = msg
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
        "labels": len(resolved.labels), "provenance": resolved.provenance(),
        "notes": list(resolved.notes) + route_notes(exported),
        "targets": {t: results[t] for t in all_targets}, "failed": failed,
        "parity_failed": [t for t in ok if results[t]["status"] == "parity failed"],
        "parity_inputs": n_inputs, "latency_runs": latency_runs,
    }
    refresh_manifest(out, manifest, card=render_export_card(result, manifest))
    return result


def _save_reference(model: Any, path: Path) -> None:
    from safetensors.torch import save_file

    # clone: safetensors refuses tensors that share storage (tied weights); loading does not care.
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))


def route_notes(exported: list[ExportedFile]) -> list[str]:
    """One note for every file that took a fallback route (Core ML through torch.jit.trace), said once."""
    notes = []
    traced = [f for f in exported if f.info.get("frontend") == "torch.jit.trace"]
    if traced:
        notes.append(f"{', '.join(f.target for f in traced)}: torch.export could not take this model "
                     f"({traced[0].info.get('fallback_reason', '?')}); converted through torch.jit.trace instead and "
                     "spec-checked")
    unaliased = [f for f in exported if f.info.get("rewrite") == "alias-as-identity"]
    if unaliased:
        notes.append(f"{', '.join(f.target for f in unaliased)}: torch.export could not take this model "
                     f"({unaliased[0].info.get('fallback_reason', '?')}) and the torch.jit.trace route was refused "
                     f"({unaliased[0].info.get('trace_refused', '?')}); converted the torch.export program with its "
                     "alias nodes dropped (alias-as-identity) and spec-checked")
    return notes


def works_instead(failed: dict[str, str], worked: Iterable[str]) -> dict[str, str]:
    """Each failure message followed by the known toolchain issue it matches (export/known_issues.py) and the
    targets that did export for this model."""
    from pocketvit.export.known_issues import explain

    worked = list(worked)
    return {t: explain(t, msg, worked) for t, msg in failed.items()}
