"""Nothing unverified ships: each checked file's figures against its tolerance, and what the build does with a file
that missed it (recipe `verify.on_mismatch`):

    fail   (default) the build stops with `pocketvit verify`'s exit code (6) and message shape (target, figure, value,
           tolerance); no bundle is written, and the bundle of an earlier build in the same folder is removed
    drop   the target (or its exit program) is left out of the bundle, and the build says so
    keep   the target ships, marked as failed in the manifest, report.json, report.md/html and the model card

The verdict is computed from the verify stage's figures each time the build runs (cached stages included), so changing
`on_mismatch` reruns no stage. Every target of report.json gets `verify {status, failures, tolerance, action}`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pocketvit.bench.parity import parity_failures
from pocketvit.errors import VerifyError
from pocketvit.progress import log

ACTIONS = {"fail": "build failed", "drop": "dropped from the bundle", "keep": "shipped, marked as failed"}


def tolerance_dict(tol: Any) -> dict[str, float]:
    return {"max_abs_diff": tol.max_abs_diff, "cosine": tol.cosine, "top1_agreement": tol.top1_agreement}


def judge_target(entry: dict[str, Any], tol: Any, zero_shot: bool = False) -> dict[str, Any]:
    """entry["verify"]: the exported file's parity against eager torch over the test split, checked against `tol`
    (a zero-shot embedding has no top-1 of its own: max |Δ| and cosine). "not run" when the file cannot execute here."""
    p = entry.get("parity")
    if not p:
        verdict = {"status": "not run", "failures": [], "note": entry.get("note")}
    else:
        failures = parity_failures(p, tol.max_abs_diff, tol.cosine, None if zero_shot else tol.top1_agreement)
        verdict = {"status": "fail" if failures else "pass", "failures": failures}
    verdict["tolerance"] = tolerance_dict(tol) | ({"top1_agreement": None} if zero_shot else {})
    entry["verify"] = verdict
    return verdict


def judge_exit_program(entry: dict[str, Any], tol: Any) -> dict[str, Any]:
    """The exit program on its runtime against the eager exit model: top-1 agreement and the share of images that
    leave at the same exit, each at least the top-1 tolerance."""
    if entry.get("test_top1") is None:
        verdict = {"status": "not run", "failures": [], "note": entry.get("note")}
    else:
        failures = []
        for key, what in (("top1_agreement_with_eager", "top-1 agreement"), ("decision_agreement", "exit decisions agree")):
            v = entry.get(key)
            if v is not None and not v >= tol.top1_agreement:
                failures.append(f"{what} {v:.4f} < {tol.top1_agreement:g}")
        verdict = {"status": "fail" if failures else "pass", "failures": failures}
    verdict["tolerance"] = {"top1_agreement": tol.top1_agreement}
    entry["verify"] = verdict
    return verdict


def failed(entries: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {t: e for t, e in entries.items() if (e.get("verify") or {}).get("status") == "fail"}


def mismatch_lines(bad: dict[str, dict[str, Any]], label: str = "", files: dict[str, dict[str, Any]] | None = None
                   ) -> list[str]:
    """`pocketvit verify`'s shape: target (runtime, precision): figure value op tolerance; ... (an exit program
    takes its target's runtime and precision from `files`)."""
    out = []
    for t, e in bad.items():
        f = {**(files or {}).get(t, {}), **e}
        out.append(f"{t}{label} ({f.get('runtime', '?')}, {f.get('precision', 'fp32')}): "
                   + "; ".join(e["verify"]["failures"]))
    return out


def enforce(policy: str, out_dir: Path, targets: dict[str, dict[str, Any]], exits: dict[str, dict[str, Any]],
            images: int | None) -> tuple[dict[str, Any], VerifyError | None]:
    """Apply `verify.on_mismatch` to the judged targets and exit programs: (report.json's `verify` block {on_mismatch,
    passed, failed, dropped, kept, not_run}, the VerifyError the build must stop with or None). It stops under `fail`
    (the bundle an earlier build left in `out_dir` is removed) and when `drop` would leave nothing to ship."""
    bad, bad_exits = failed(targets), failed(exits)
    lines = mismatch_lines(bad) + mismatch_lines(bad_exits, " exits", targets)
    summary = {"on_mismatch": policy, "passed": not lines, "failed": lines, "dropped": [], "kept": [],
               "not_run": sorted(t for t, e in targets.items() if e.get("verify", {}).get("status") == "not run")}
    action = ACTIONS[policy]
    for e in (*targets.values(), *exits.values()):
        v = e.get("verify")
        if v is not None:
            v["action"] = action if v["status"] == "fail" else ("shipped" if v["status"] == "pass" else "shipped, not run here")
    if not lines:
        return summary, None
    over = f" over the {images}-image test split" if images else ""
    if policy == "fail" or (policy == "drop" and len(bad) == len(targets)):
        removed = ""
        old = out_dir / "bundle"
        if old.exists():
            shutil.rmtree(old)
            removed = f" The bundle an earlier build left in {old} was removed."
        why = ("every target missed its tolerance, so there is nothing to ship (verify.on_mismatch: drop)"
               if policy == "drop" else "no bundle was written")
        summary["bundle"] = None
        return summary, VerifyError(
            f"{len(lines)} file(s) do not match eager torch{over} — " + " | ".join(lines) + f". {why[0].upper()}{why[1:]};"
            f"{removed} Fix the model or its export, loosen verify.tolerance (quantize.tolerance for int8 targets), or set "
            "verify.on_mismatch: drop (leave them out) or keep (ship them marked as failed)")
    for line in lines:
        log(f"[bold red]verify failed[/bold red]: {line} — {action} (verify.on_mismatch: {policy})")
    key = "dropped" if policy == "drop" else "kept"
    summary[key] = sorted(bad) + sorted(f"{t} exits" for t in bad_exits)
    return summary, None
