"""`pocketvit bench BUNDLE --device ssh://...` and `pocketvit verify BUNDLE --device ...`: the same measurements as
on this machine, made on the user's own device (bench/remote.py carries them) and put beside this machine's.

bench: the device times the bundle's targets with the timing core of a local bench (bench/timing.py: isolated
processes or interleaved rounds, threads stated, median / p90, Predictor.predict's overhead) on the same image;
this machine then runs its own bench on the same targets. verify: the device runs verify's inputs (the same seeded
images and crops) through each target; its outputs are compared here with eager torch (the tolerances of a local
verify) and with this machine's runtime on the same file.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from pocketvit.bench._common import (
    input_color,
    open_bundle,
    open_target,
    precision_class,
    runtime_module,
    target_outputs,
)
from pocketvit.bench.remote import (
    BENCH_STUB,
    DeviceAddress,
    DeviceInterrupted,
    DeviceSession,
    device_label,
    parse_device,
    runner_files,
)
from pocketvit.bench.timing import MIN_RUNS, bench_image, choose_method
from pocketvit.errors import DeviceError
from pocketvit.runtime.manifest import listed_files
from pocketvit.runtime.targets import runtime_info

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def missing_runtime(runtime: str, python: str) -> str:
    """Why a runtime cannot run on the device, naming what to install there."""
    if runtime == "coreml":
        return "Core ML executes on macOS and iOS only"
    what = {"litert": "pip install ai-edge-litert (or tflite-runtime, with numpy<2)",
            "executorch": "pip install executorch (needs torch)"}.get(
        runtime, f"pip install {runtime_info(runtime).package}")
    return f"not installed for {python}: {what}"


def device_targets(bundle, chosen: list[str], info: dict[str, Any], explicit: bool, where: str,
                   python: str) -> tuple[list[str], dict[str, str]]:
    """(targets the device can run, {target: why not} for the others). A target named on the command line whose
    runtime the device lacks is an error; so is a device that can run none of them."""
    if not info["modules"].get("numpy"):
        raise DeviceError(f"{where}: {python} has no numpy (pocketvit.runtime needs it): pip install numpy on the "
                          "device (numpy<2 with tflite-runtime), or pass --device-python PATH of a Python that has it")
    runnable, skipped = [], {}
    for t in chosen:
        rt = bundle.runtime_of(t)
        if info["runtimes"].get(rt):
            runnable.append(t)
            continue
        skipped[t] = missing_runtime(rt, python)
        if explicit:
            raise DeviceError(f"{t} cannot run on {where}: {skipped[t]}")
    if not runnable:
        raise DeviceError(f"{where} can run none of this bundle's targets: "
                          + "; ".join(f"{t}: {why}" for t, why in skipped.items()))
    return runnable, skipped


def _payload(bundle, targets: list[str], job: dict[str, Any], arrays: dict[str, np.ndarray]):
    """Files and blobs for the device: the bundle cut to ``targets`` (its manifest lists only them), the job and
    its inputs."""
    m = json.loads(json.dumps(bundle.manifest))
    m["files"] = {t: m["files"][t] for t in targets}
    files = {f"bundle/{rel}": bundle.root / rel for _, rel, _ in listed_files(m)}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    blobs = {"bundle/manifest.json": json.dumps(m, indent=1).encode(), "job.json": json.dumps(job).encode(),
             "inputs.npz": buf.getvalue()}
    return files, blobs


def _code_payload() -> tuple[dict, dict]:
    return ({f"pv/pocketvit/{rel}": p for rel, p in runner_files().items()},
            {"pv/pocketvit/bench/__init__.py": BENCH_STUB.encode()})


def _device_block(address: DeviceAddress, info: dict[str, Any], python: str) -> dict[str, Any]:
    return {"address": address.label, "label": device_label(info), "python_command": python, **info}


def emulation_note(info: dict[str, Any]) -> str | None:
    if not info.get("emulated"):
        return None
    return (f"the device is emulated ({info['emulated']}): its timings measure the emulator on the host, "
            "not the device — they are no device latency")


def _run_on_device(address: DeviceAddress, session_args: dict[str, Any], bundle, chosen: list[str], explicit: bool,
                   command: str, job: dict[str, Any], arrays: dict[str, np.ndarray], say: Say,
                   fetch: str | None = None):
    """Connect, probe, ship the runnable targets and run ``command``; (probe, result, skipped, fetched bytes)."""
    python = session_args.get("python", "python3")
    try:
        with DeviceSession(address, **session_args) as s:
            s.upload(*_code_payload())
            info = s.run("probe")
            where = f"{address.label} ({info.get('model')})"
            runnable, skipped = device_targets(bundle, chosen, info, explicit, where, python)
            s.upload(*_payload(bundle, runnable, {**job, "targets": runnable}, arrays))
            say(f"{command} on {device_label(info)}: {', '.join(runnable)}"
                + (" [emulated]" if info.get("emulated") else ""))
            result = s.run(command)
            data = s.fetch(fetch) if fetch else None
    except KeyboardInterrupt:
        raise DeviceInterrupted(f"interrupted: stopped the {command} run on {address.label} and removed its "
                                "temporary folder there") from None
    return info, result, skipped, data


def bench_on_device(
    bundle_path: str | os.PathLike, device: str, targets: list[str] | None = None, runs: int = 100,
    threads: int | None = None, warmup: int = 10, seed: int = 0, exits: bool = True, method: str = "auto",
    ssh_config: str | None = None, python: str = "python3", device_dir: str | None = None, local: bool = True,
    say: Say = _quiet,
) -> dict[str, Any]:
    """Time the bundle's targets on ``device`` (ssh://USER@HOST[:PORT]) and, with ``local``, on this machine with
    the same settings (bench_bundle). Returns a JSON-able dict."""
    if runs < MIN_RUNS:
        raise ValueError(f"runs must be at least {MIN_RUNS} (median and p90 need enough samples)")
    choose_method(method, 1)
    address = parse_device(device)
    bundle, chosen = open_bundle(bundle_path, targets)
    spec = bundle.input_spec
    color = input_color(spec)
    image = bench_image(spec, seed)  # the image a local bench times
    job = {"runs": runs, "warmup": warmup, "threads": threads, "method": method, "seed": seed, "exits": exits,
           "color": color}
    info, dev, skipped, _ = _run_on_device(
        address, {"ssh_config": ssh_config, "python": python, "base_dir": device_dir}, bundle, chosen,
        bool(targets), "bench", job, {"image": image}, say)
    for t in chosen:
        e = bundle.file_info(t)
        row = {"runtime": e["runtime"], "target": t, "precision": e.get("precision", "fp32")}
        dev["results"][t] = row | (dev["results"].get(t) or {"note": skipped.get(t)})
        if "error" in dev["results"][t]:
            dev["results"][t]["note"] = f"could not run on the device: {dev['results'][t]['error']}"
    notes = [n for n in (emulation_note(info),) if n]
    local_result = None
    if local:
        from pocketvit.bench.latency import bench_bundle

        say("the same targets on this machine…")
        ran = [t for t in chosen if "median_ms" in dev["results"][t]]
        local_result = bench_bundle(bundle_path, ran or chosen, runs=runs, threads=threads, warmup=warmup, seed=seed,
                                    exits=exits, method=method, strict=False)
        notes += [f"here: {n}" for n in local_result["notes"]]
    notes += [f"on the device: {n}" for n in dev.pop("notes", [])]
    return {"name": bundle.name, "bundle": str(bundle.source), "batch": 1, "runs": runs, "warmup": warmup,
            "seed": seed, "device": _device_block(address, info, python), "device_bench": dev,
            "local": local_result, "notes": notes}


def verify_on_device(
    bundle_path: str | os.PathLike, device: str, targets: list[str] | None = None, n_inputs: int = 64, seed: int = 0,
    tolerance_overrides: dict[str, dict[str, Any]] | None = None, threads: int | None = None,
    ssh_config: str | None = None, python: str = "python3", device_dir: str | None = None, say: Say = _quiet,
) -> dict[str, Any]:
    """verify's check with the targets run on ``device``: each against eager torch (tolerances as a local verify)
    and against this machine's runtime on the same file. Never raises for a missed tolerance (raise_on_failure)."""
    from pocketvit.bench.measure import parity
    from pocketvit.bench.parity import EagerReference, TargetParity, fill, parity_result, tolerances

    if n_inputs < 1:
        raise ValueError("n_inputs must be at least 1")
    address = parse_device(device)
    bundle, chosen = open_bundle(bundle_path, targets)
    tols = tolerances(tolerance_overrides)
    ref = EagerReference(bundle, n_inputs, seed)
    info, dev, skipped, raw = _run_on_device(
        address, {"ssh_config": ssh_config, "python": python, "base_dir": device_dir}, bundle, chosen,
        bool(targets), "verify", {"threads": threads}, {"images": np.stack(ref.images), "crops": ref.crops}, say,
        fetch="outputs.npz")
    outputs = np.load(io.BytesIO(raw))
    rows, vs_local = [], {}
    for t in chosen:
        e = bundle.file_info(t)
        row = TargetParity(t, e["runtime"], str(e.get("precision", "fp32")), "not run")
        got = dev["results"].get(t)
        if got is None:
            row.note = skipped.get(t)
        elif "error" in got:
            row.status, row.failures = "fail", [f"could not run on the device: {got['error']}"]
        else:
            out = outputs[dev["keys"][t]]
            fill(row, out, ref(got["outputs"]), tols[precision_class(t, e)], got["outputs"])
            p, note = open_target(bundle, t, threads, False)
            if p is None:
                vs_local[t] = {"note": f"not run here: {note}"}
            else:
                try:
                    vs_local[t] = parity(out, target_outputs(p, ref.spec, ref.crops, ref.images), got["outputs"]) | {
                        "module": runtime_module(p),
                        "device_module": got.get("module")}
                finally:
                    p.close()
        rows.append(row)
    result = parity_result(bundle, rows, n_inputs, seed, device_label(info))
    result |= {"device": _device_block(address, info, python), "vs_local": vs_local,
               "device_preprocessing_max_pixel_diff": dev.get("preprocessing_max_pixel_diff"),
               "notes": [n for n in (emulation_note(info),) if n]}
    return result
