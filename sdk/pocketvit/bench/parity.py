"""`pocketvit verify`: each target of a bundle, run on its own runtime, against eager torch.

The same seeded random uint8 images go through the bundle's own preprocessing (the manifest's
contract, pocketvit.runtime) once; each target gets them in its own input form, the eager model
(rebuilt from the bundle's ``source`` block and reference weights) as float NCHW. Figures per
target: largest |runtime - eager| over all outputs, the smallest per-image cosine, and top-1
agreement. A target passes when every figure is within its precision's tolerance.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pocketvit.bench._common import (
    crops_of,
    eager_inputs,
    eager_model,
    eager_outputs,
    open_bundle,
    open_target,
    precision_class,
    random_images,
    target_outputs,
)
from pocketvit.errors import BundleError, NotRunError, OutputError, VerifyError


@dataclass
class Tolerance:
    """Pass when max_abs_diff <= max_abs_diff (None: not checked), cosine >= cosine, top-1 >= top1."""

    max_abs_diff: float | None
    cosine: float
    top1: float


DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_abs_diff=1e-3, cosine=0.999, top1=0.99),
    "fp16": Tolerance(max_abs_diff=5e-2, cosine=0.999, top1=0.99),
    "int8": Tolerance(max_abs_diff=None, cosine=0.98, top1=0.9),
}


def tolerances(overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, Tolerance]:
    """Default tolerances per precision class, with ``{"fp32": {"cosine": 0.9999}, ...}`` applied."""
    out = {k: Tolerance(**asdict(v)) for k, v in DEFAULT_TOLERANCES.items()}
    for cls, values in (overrides or {}).items():
        for key, value in values.items():
            if value is not None:
                setattr(out[cls], key, value)
    return out


@dataclass
class TargetParity:
    target: str
    runtime: str
    precision: str
    status: str  # "pass" | "fail" | "not run"
    max_abs_diff: float | None = None
    cosine: float | None = None
    top1_agreement: float | None = None
    tolerance: dict[str, Any] | None = None
    failures: list[str] = field(default_factory=list)
    note: str | None = None
    runtime_info: dict[str, Any] | None = None  # provider / delegate / threads and the fallbacks taken
    run_error: str | None = None  # the runtime could not load or run the file (status "fail")
    constant_output: str | None = None  # the file gives every input the same output (status "fail")


def parity_failures(figures: dict[str, Any], max_abs_diff: float | None, cosine: float | None,
                    top1: float | None) -> list[str]:
    """Each figure outside its tolerance, as `pocketvit verify` prints it ("cosine 0.93 < 0.999"); a None
    tolerance (or a figure the check does not have) is not checked. The build's verify stages use it too. A file
    whose output does not depend on its input (measure.constant_output) fails whatever the tolerances."""
    fails = [figures["constant_output"]] if figures.get("constant_output") else []
    v = figures.get("max_abs_diff")
    if max_abs_diff is not None and v is not None and not v <= max_abs_diff:
        fails.append(f"max abs diff {v:.3g} > {max_abs_diff:g}")
    v = figures.get("cosine")
    if cosine is not None and v is not None and not v >= cosine:
        fails.append(f"cosine {v:.6f} < {cosine:g}")
    v = figures.get("top1_agreement")
    if top1 is not None and v is not None and not v >= top1:
        fails.append(f"top-1 agreement {v:.4f} < {top1:g}")
    return fails


def check(row: TargetParity, tol: Tolerance) -> None:
    """Fill row.status / row.failures from its figures and ``tol``."""
    row.tolerance = asdict(tol)
    row.failures = parity_failures(asdict(row), tol.max_abs_diff, tol.cosine, tol.top1)
    row.status = "fail" if row.failures else "pass"


class EagerReference:
    """verify's inputs (seeded random images, their crops through the bundle's preprocessing) and the eager torch
    model's outputs on them, per output kind: ``ref("logits")``; a drop-in file outputs probabilities."""

    def __init__(self, bundle, n_inputs: int, seed: int):
        self.spec = bundle.input_spec
        self.images = random_images(self.spec, n_inputs, seed)
        self.crops = crops_of(self.images, self.spec)
        self._bundle = bundle
        self._model = None  # built on first use: torch is slow to import, and a device may fail first
        self._refs: dict[str, np.ndarray] = {}

    def __call__(self, outputs: str) -> np.ndarray:
        if self._model is None:
            self._model = eager_model(self._bundle)
            self._x = eager_inputs(self.crops, self.spec)
        if outputs not in self._refs:
            self._refs[outputs] = eager_outputs(self._model, self._x, outputs)
        return self._refs[outputs]


def fill(row: TargetParity, out: np.ndarray, ref: np.ndarray, tol: Tolerance, outputs: str = "logits") -> None:
    """A target's figures against the eager reference (probabilities as log-probabilities), then pass / fail
    against ``tol``; a file whose output does not depend on its input fails whatever its figures."""
    from pocketvit.bench.measure import parity

    figures = parity(out, ref.reshape(len(ref), -1), outputs)
    row.max_abs_diff = figures["max_abs_diff"]
    row.cosine = figures["cosine"]
    row.top1_agreement = figures["top1_agreement"]
    row.constant_output = figures.get("constant_output")
    check(row, tol)


def verify_bundle(
    bundle_path: str | os.PathLike,
    targets: list[str] | None = None,
    n_inputs: int = 64,
    seed: int = 0,
    tolerance_overrides: dict[str, dict[str, Any]] | None = None,
    threads: int | None = None,
    exits: bool = True,
) -> dict[str, Any]:
    """Compare every (or each named) target with eager torch. Returns a JSON-able result; never raises
    for a missed tolerance (see ``raise_on_failure``). A runtime that is not installed gives a
    "not run" row when the target was not asked for by name, and MissingExtraError when it was."""
    if n_inputs < 1:
        raise ValueError("n_inputs must be at least 1")
    explicit = bool(targets)
    bundle, chosen = open_bundle(bundle_path, targets)
    tols = tolerances(tolerance_overrides)
    ref = EagerReference(bundle, n_inputs, seed)
    ref(bundle.outputs)  # the eager model first: a bundle it cannot be rebuilt from is an error before any runtime
    spec, images, crops = ref.spec, ref.images, ref.crops

    rows: list[TargetParity] = []
    for t in chosen:
        info = bundle.file_info(t)
        row = TargetParity(t, info["runtime"], str(info.get("precision", "fp32")), "not run")
        rows.append(row)
        try:  # a file its runtime cannot load or run fails on its own; the other targets are still checked
            p, note = open_target(bundle, t, threads, explicit)
            if p is None:
                row.note = note
                continue
            try:
                if p.input_spec is not spec and images is None:
                    images = random_images(spec, n_inputs, seed)
                out = target_outputs(p, spec, crops, images)
                row.runtime_info = p.runtime_info()
            finally:
                p.close()
        except (BundleError, OutputError) as e:
            row.run_error = str(e).splitlines()[0]
            row.status, row.failures = "fail", [f"does not run on {row.runtime}: {row.run_error}"]
            continue
        fill(row, out, ref(p.outputs), tols[precision_class(t, info)], p.outputs)
    if exits:  # early-exit programs: the runtime's segment chain vs the eager exit model (exits/verify.py)
        from pocketvit.exits.verify import exit_rows

        rows += exit_rows(bundle, chosen, crops, spec, tols, threads, explicit, TargetParity, check)
    return parity_result(bundle, rows, n_inputs, seed, f"{platform.system()} {platform.machine()}")


def parity_result(bundle, rows: list[TargetParity], n_inputs: int, seed: int, where: str) -> dict[str, Any]:
    return {
        "bundle": str(bundle.source),
        "name": bundle.name,
        "inputs": n_inputs,
        "seed": seed,
        "input": "seeded random uint8 images through the bundle's own preprocessing",
        "eager": {"arch": bundle.manifest["source"].get("arch")},
        "platform": where,
        "targets": {r.target: asdict(r) for r in rows},
        "passed": all(r.status != "fail" for r in rows),
    }


def raise_on_failure(result: dict[str, Any], allow_unrun: bool = False) -> None:
    """VerifyError (exit code 6) naming every target that missed its tolerance and the figure; NotRunError (exit
    code 8) when no target could run here (Core ML off macOS, a runtime that is not installed), so nothing was
    verified, unless ``allow_unrun``."""
    rows = list(result["targets"].values())
    bad = [r for r in rows if r["status"] == "fail"]
    if bad:
        lines = [f"{r['target']} ({r['runtime']}, {r['precision']}): " + "; ".join(r["failures"]) for r in bad]
        raise VerifyError(
            f"{result['bundle']}: {len(bad)} target(s) do not match eager torch over {result['inputs']} inputs — "
            + " | ".join(lines)
        )
    if not allow_unrun and not any(r["status"] == "pass" for r in rows):
        raise NotRunError(nothing_ran_message(result["bundle"], {r["target"]: r["note"] for r in rows}, "verified"))


def nothing_ran_message(bundle: str, notes: dict[str, str | None], what: str) -> str:
    """`pocketvit verify` / `bench` when no target could run: which targets, why, and what to do."""
    why = " | ".join(f"{t}: {note or 'not run'}" for t, note in notes.items()) or "the bundle lists no target"
    return (f"{bundle}: no target could run on this machine, so nothing was {what} — {why}. Run it where a runtime "
            "of the bundle executes (Core ML: macOS or iOS), install the missing runtime, or pass --allow-unrun to "
            "accept a run that checks nothing")
