"""Put an early-exit program into a bundle: segment files placed beside the target's model file,
`files[target]["segments"]` = [{method, path, sha256, bytes}] and the manifest's `exits` list
[{name, after_block, head, method, threshold}] (the final segment's threshold is null)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def exits_list(exits: list[dict[str, Any]], thresholds: list[float]) -> list[dict[str, Any]]:
    out = []
    for i, e in enumerate(exits):
        th = float(thresholds[i]) if i < len(thresholds) else None
        out.append({"name": e["name"], "after_block": e["after_block"], "head": e["head"], "method": e["method"],
                    "threshold": th})
    return out


EXIT_WEIGHTS = "reference/exits.safetensors"


def add_exit_programs(bundle_dir: Path | str, programs: dict[str, tuple[Path, dict[str, Any]]],
                      thresholds: list[float], exit_weights: Path | str | None = None) -> dict[str, Any]:
    """programs: {target: (folder holding the exported segment files, export meta from exits/export.py)}.
    exit_weights: the eager EarlyExitModel's safetensors, placed at reference/exits.safetensors and named
    in source["exits"] so `pocketvit verify` can rebuild the eager exit model.
    Rewrites manifest.json (validated, atomically); returns it."""
    from pocketvit.export.bundle import place
    from pocketvit.runtime.manifest import segment_entry, write_manifest

    bundle = Path(bundle_dir)
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    exits = None
    for target, (folder, meta) in programs.items():
        if target not in manifest["files"]:
            continue
        for name in dict.fromkeys(s["file"] for s in meta["segments"]):
            place(Path(folder) / name, bundle / name)
        manifest["files"][target]["segments"] = [segment_entry(bundle, s["method"], s["file"]) for s in meta["segments"]]
        exits = exits or exits_list(meta["exits"], thresholds)
    if exits:
        manifest["exits"] = exits
        if exit_weights is not None:
            place(Path(exit_weights), bundle / EXIT_WEIGHTS)
            manifest.setdefault("source", {})["exits"] = {
                "after_blocks": [e["after_block"] for e in exits[:-1]],
                "heads": [e["head"] for e in exits[:-1]],
                "weights": EXIT_WEIGHTS,
            }
    write_manifest(bundle, manifest)
    return manifest
