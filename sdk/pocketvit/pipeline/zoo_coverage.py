"""`pocketvit zoo-coverage` (`make test-zoo`): does every target take every family of vision model?

Per model (the smallest timm variant of each family, random weights with BatchNorm statistics re-estimated:
what `pocketvit export timm:NAME` does without --checkpoint), in its own process so that a toolchain crash or
hang costs one row: `export_to_bundle` (the `pocketvit export` path) with every float target, the default drop-in
files (LiteRT, Core ML) and int8 for every runtime (calibrated on random images, no sensitivity pass); each file
is then run on its own runtime against eager torch (Core ML: converted and spec-checked, it cannot run on Linux).

Each cell is `ok`, or the failure's reason with the toolchain's known issue (export/known_issues.py) and the
targets that worked instead. Rows go into DIR/zoo-coverage.json as each model finishes, so an interrupted run
continues where it stopped; DIR/zoo-coverage.md (and, given, the docs page's table) is rewritten after each row.

    rows = run_coverage(["ghostnet_050"], Path("docs/results"), size=None)   # None: each model's small size
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketvit.runtime.io import write_json

FLOAT = ("executorch", "litert", "onnx", "coreml")
DROPIN = ("litert-dropin", "coreml-dropin")
INT8 = ("executorch-int8", "litert-int8", "onnx-int8", "coreml-int8")
COLUMNS = FLOAT + DROPIN + INT8
SMALL = 64
EVIDENCE = "zoo-coverage"
# rewrites that make a target work at all (not only faster): a cell that needed one is "ok, worked around"
ENABLING_REWRITES = ("linear-attention-broadcast", "addcmul-as-mul-add", "nearest-resize-as-gather",
                     "qkv-bias-into-linear", "cascaded-attention-transposed-matmul")


@dataclass(frozen=True)
class ZooModel:
    family: str
    name: str  # timm name
    small: int = SMALL  # the small size it is checked at (the smallest it accepts, if above SMALL)


ZOO: tuple[ZooModel, ...] = (  # the families of the issue first, then more; VGG-11 (133M parameters) last
    ZooModel("MobileNetV3", "mobilenetv3_small_050"),
    ZooModel("MobileNetV4", "mobilenetv4_conv_small"),
    ZooModel("EfficientNet", "efficientnet_b0"),
    ZooModel("EfficientNetV2", "tf_efficientnetv2_b0"),
    ZooModel("ResNet", "resnet10t"),
    ZooModel("ConvNeXt", "convnext_atto"),
    ZooModel("ConvNeXtV2", "convnextv2_atto"),
    ZooModel("DeiT", "deit_tiny_patch16_224"),
    ZooModel("DeiT3", "deit3_small_patch16_224"),
    ZooModel("ViT", "vit_tiny_patch16_224"),
    ZooModel("TinyViT", "tiny_vit_5m_224"),
    ZooModel("FastViT", "fastvit_t8"),
    ZooModel("MobileCLIP MCi", "fastvit_mci0"),
    ZooModel("EfficientViT (MIT)", "efficientvit_b0"),
    ZooModel("EfficientViT (MSRA)", "efficientvit_m0"),
    ZooModel("MobileViT", "mobilevit_xxs"),
    ZooModel("MobileViTv2", "mobilevitv2_050"),
    ZooModel("LeViT", "levit_128s"),
    ZooModel("EdgeNeXt", "edgenext_xx_small"),
    ZooModel("RepViT", "repvit_m0_9"),
    ZooModel("RegNetX", "regnetx_002"),
    ZooModel("RegNetY", "regnety_002"),
    ZooModel("GhostNet", "ghostnet_050"),
    ZooModel("GhostNetV2", "ghostnetv2_100"),
    ZooModel("MobileOne", "mobileone_s0"),
    ZooModel("EfficientFormer", "efficientformer_l1", small=224),  # its attention bias is fixed at 7x7 tokens
    ZooModel("EfficientFormerV2", "efficientformerv2_s0"),
    ZooModel("Swin", "swin_tiny_patch4_window7_224"),
    ZooModel("PoolFormerV2", "poolformerv2_s12"),
    ZooModel("CAFormer", "caformer_s18"),
    ZooModel("EVA-02", "eva02_tiny_patch14_224"),
    ZooModel("MaxViT", "maxvit_rmlp_pico_rw_256"),
    ZooModel("CoAtNet", "coatnet_pico_rw_224"),
    ZooModel("InceptionNeXt", "inception_next_atto"),
    ZooModel("HGNetV2", "hgnetv2_b0"),
    ZooModel("TinyNet", "tinynet_e"),
    ZooModel("MNASNet", "mnasnet_small"),
    ZooModel("LCNet", "lcnet_050"),
    ZooModel("RepGhost", "repghostnet_050"),
    ZooModel("FBNetV3", "fbnetv3_b"),
    ZooModel("DLA", "dla46_c"),
    ZooModel("HRNet", "hrnet_w18_small"),
    ZooModel("MobileNetV2", "mobilenetv2_050"),
    ZooModel("MixNet", "mixnet_s"),
    ZooModel("ReXNet", "rexnet_100"),
    ZooModel("DenseNet", "densenet121"),
    ZooModel("FasterNet", "fasternet_t0"),
    ZooModel("StarNet", "starnet_s050"),
    ZooModel("MambaOut", "mambaout_femto"),
    ZooModel("PVTv2", "pvt_v2_b0"),
    ZooModel("XCiT", "xcit_nano_12_p16_224"),
    ZooModel("SHViT", "shvit_s1"),
    ZooModel("GCViT", "gcvit_xxtiny"),
    ZooModel("VGG", "vgg11"),
)


def zoo_entry(name: str) -> ZooModel:
    for m in ZOO:
        if m.name == name:
            return m
    return ZooModel("other", name)


# --------------------------------------------------------------------------- one model (in its own process)


def classify(target: str, r: dict[str, Any]) -> dict[str, Any]:
    """One matrix cell from export_to_bundle's result row of `target`."""
    from pocketvit.bench.measure import CONSTANT_OUTPUT
    from pocketvit.export._common import offending_op
    from pocketvit.export.known_issues import known_issue

    cell: dict[str, Any] = {"seconds": r.get("seconds")}
    info = r.get("backend") or {}
    if r["status"] == "failed":
        error = r.get("error", "")
        issue = known_issue(target, error)
        marker = "Exported for this model instead: "
        instead = next((line[len(marker):].rstrip(".") for line in error.splitlines() if line.startswith(marker)), "")
        cell.update(status="failed", reason=error.splitlines()[0] if error else "?", operator=offending_op(error),
                    issue=issue.to_dict() if issue else None, works_instead=[t for t in instead.split(", ") if t])
        return cell
    workarounds = []
    if info.get("frontend") == "torch.jit.trace":
        workarounds.append(f"torch.jit.trace route ({info.get('fallback_reason', '')})")
    if info.get("rewrite") == "alias-as-identity":
        workarounds.append(f"alias nodes dropped, torch.jit.trace refused ({info.get('trace_refused', '')})")
    workarounds += [f"rewrite {n}" for n in (info.get("rewrites") or {}) if n in ENABLING_REWRITES]
    if info.get("quantizer_mends"):  # listed apart: a mend counts the nodes it changed, needed or not
        cell["mends"] = sorted(info["quantizer_mends"])
    if workarounds:
        cell["workarounds"] = workarounds
    parity = r.get("parity")
    if parity:
        cell["parity"] = {k: parity.get(k) for k in ("max_abs_diff", "cosine", "top1_agreement")}
    if r["status"] == "ok":
        cell["status"] = "ok"
    elif r["status"] == "not run" and target.startswith("coreml"):
        check = info.get("spec_check") or {}
        cell["status"] = "ok" if check.get("ok") else "failed"
        cell["checked"] = "converted + spec check (Core ML cannot run on Linux)"
        if not check.get("ok"):
            cell["reason"] = f"spec check: {check.get('problems')}"
    elif (r["status"] == "parity failed" and target.endswith("-int8") and not r.get("run_error")
          and not any(f.startswith(CONSTANT_OUTPUT) for f in (parity or {}).get("failures") or [])):
        # random weights and random calibration images: int8 agreement says little about a real model (but an
        # output that ignores the input is a broken file, whatever the weights)
        cell.update(status="runs", reason="; ".join(parity.get("failures") or []) if parity else "")
    else:
        cell.update(status="failed", reason=(r.get("note") or "; ".join((parity or {}).get("failures") or [])
                                            or r["status"]))
    return cell


def run_one(name: str, size: int, work: Path, targets: Iterable[str] = COLUMNS, threads: int = 2) -> dict[str, Any]:
    """Export `name` at size x size to `targets` (matrix columns) through export_to_bundle; classify each cell."""
    import torch

    from pocketvit.errors import PocketVitError
    from pocketvit.models.sources import resolve_model
    from pocketvit.pipeline.export_model import export_to_bundle

    targets = [t for t in COLUMNS if t in set(targets)]
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # the runtimes flush denormals; random-weight activations can be denormal
    row: dict[str, Any] = {"model": name, "family": zoo_entry(name).family, "size": size}
    t0 = time.perf_counter()
    try:
        resolved = resolve_model(f"timm:{name}", input_size=(size, size))
    except PocketVitError as e:
        row.update(error=str(e).splitlines()[0], seconds=round(time.perf_counter() - t0, 1),
                   targets={t: {"status": "failed", "reason": "the model does not build at this size"} for t in targets})
        return row
    row["params_m"] = round(resolved.params / 1e6, 2)
    int8_bases = [t.removesuffix("-int8") for t in targets if t in INT8]
    quantize = None
    if int8_bases:
        from pocketvit.export.quantize.cli_support import int8_exporter

        g = torch.Generator().manual_seed(1)
        calib = torch.randn(16, 3, size, size, generator=g)
        run_int8 = int8_exporter(None, sensitivity=False, images=(calib, calib[:0], None))

        def quantize(resolved, _float_targets, staging, say):  # int8 for the runtimes asked, whatever fp32 runs
            return run_int8(resolved, int8_bases, staging, say)

    try:
        result = export_to_bundle(resolved, [t for t in targets if t in FLOAT], work / "bundle", n_inputs=8,
                                  latency_runs=3, threads=threads, quantize=quantize, compare_rewrites=False,
                                  dropin=[t.removesuffix("-dropin") for t in targets if t in DROPIN])
        results = result["targets"]
        row["notes"] = result["notes"]
    except PocketVitError as e:  # nothing exported
        message = str(e)
        results = {t: {"status": "failed", "error": _error_of(t, message)} for t in targets}
    row["targets"] = {t: classify(t, results[t]) for t in targets if t in results}
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def _error_of(target: str, message: str) -> str:
    """A target's own line out of export_to_bundle's "nothing was written" message ('- target: ...')."""
    for line in message.splitlines():
        if line.startswith(f"- {target}: "):
            return line[len(f"- {target}: "):]
    return message.splitlines()[0]


# --------------------------------------------------------------------------- the run (resumable)


def load_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return list(json.loads(path.read_text()).get("models", []))


def with_known_issues(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every failure cell annotated with the known issue it matches today (export/known_issues.py), also one
    recorded before the issue was written down; the reason stays what the toolchain said then."""
    from pocketvit.export.known_issues import known_issue

    for r in rows:
        for t, cell in r["targets"].items():
            issue = known_issue(t, cell.get("reason", "")) if cell["status"] == "failed" else None
            if issue is not None:
                cell["issue"] = issue.to_dict()
    return rows


def merge(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """A model's row after a pass: the new cells over the old ones, the time of every pass added up."""
    if old is None:
        return {**new, "passes": [{"targets": list(new["targets"]), "seconds": new.get("seconds", 0)}]}
    row = {**old, **{k: v for k, v in new.items() if k not in ("targets", "seconds", "notes")}}
    row["targets"] = {t: (new["targets"].get(t) or old["targets"][t]) for t in COLUMNS
                      if t in new["targets"] or t in old["targets"]}
    row["notes"] = sorted(set(old.get("notes", [])) | set(new.get("notes", [])))
    row["passes"] = old.get("passes", []) + [{"targets": list(new["targets"]), "seconds": new.get("seconds", 0)}]
    row["seconds"] = round(sum(p["seconds"] for p in row["passes"]), 1)
    return row


def run_coverage(models: Iterable[str], out: Path, *, size: int | None = None, targets: Iterable[str] = COLUMNS,
                 timeout: float = 1800, fresh: bool = False, page: Path | None = None, threads: int = 2,
                 say: Callable[[str], None] = lambda _m: None) -> list[dict[str, Any]]:
    """Check every model at `size` (None: each model's small size) on `targets` (matrix columns). Cells already in
    OUT/zoo-coverage.json are kept (unless fresh), so a stopped run, or a pass over other targets, adds only the
    cells missing; the evidence files are rewritten after each model."""
    from pocketvit.report.zoo_coverage import write_evidence

    targets = [t for t in COLUMNS if t in set(targets)]
    out.mkdir(parents=True, exist_ok=True)
    rows = load_rows(out / f"{EVIDENCE}.json")
    for name in models:
        s = size or zoo_entry(name).small
        old = next((r for r in rows if r["model"] == name and r["size"] == s), None)
        todo = targets if fresh or old is None else [t for t in targets if t not in old["targets"]]
        if not todo:
            say(f"{name} @ {s}: every target asked for was checked earlier, kept")
            continue
        say(f"{name} @ {s}: {', '.join(todo)} ...")
        new = _run_isolated(name, s, todo, timeout, threads)
        rows = with_known_issues([r for r in rows if r is not old] + [merge(old, new)])
        write_evidence(rows, out, page, small={m.name: m.small for m in ZOO})
        ok = sum(1 for t in todo if new["targets"].get(t, {}).get("status") in ("ok", "runs"))
        say(f"  {name} @ {s}: {ok}/{len(todo)} ok in {new['seconds']:.0f} s")
    if rows:  # also when every cell was there: the tables follow this version's rendering and known issues
        write_evidence(with_known_issues(rows), out, page, small={m.name: m.small for m in ZOO})
    return rows


def _failed_row(name: str, size: int, targets: list[str], seconds: float, reason: str) -> dict[str, Any]:
    return {"model": name, "family": zoo_entry(name).family, "size": size, "seconds": round(seconds, 1),
            "error": reason, "targets": {t: {"status": "failed", "reason": reason} for t in targets}}


def _run_isolated(name: str, size: int, targets: list[str], timeout: float, threads: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"zoo-{name}-") as tmp:
        row_file = Path(tmp) / "row.json"
        cmd = [sys.executable, "-m", "pocketvit.pipeline.zoo_coverage", name, str(size), str(row_file), tmp,
               ",".join(targets), str(threads)]
        t0 = time.perf_counter()
        env = {**os.environ, "POCKETVIT_QUIET": "1"}
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        except subprocess.TimeoutExpired:
            return _failed_row(name, size, targets, timeout,
                               f"not finished within {timeout:.0f} s (the model's exports and checks together)")
        if proc.returncode == 0 and row_file.is_file():
            return json.loads(row_file.read_text())
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return _failed_row(name, size, targets, time.perf_counter() - t0,
                           f"the export process died (exit {proc.returncode}): {tail[0][:200]}")


def _main(argv: list[str]) -> None:
    name, size, row_file, work, targets, threads = argv
    write_json(row_file, run_one(name, int(size), Path(work), targets.split(","), threads=int(threads)))


if __name__ == "__main__":  # the per-model worker process of run_coverage
    _main(sys.argv[1:])
