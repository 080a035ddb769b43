"""The stage graph: each stage's output lives in stages/<name>-<hash>; <hash> covers its config and inputs.

A stage folder counts as finished only once its `done.json` exists (written last, atomically), so a
rerun skips finished stages, resumes an interrupted one, and recomputes what a changed setting touches.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pocketvit.errors import PocketVitError
from pocketvit.progress import log
from pocketvit.runtime.io import hash_config, sha256_file, write_json

# Files a stage keeps for itself (resume state, the marker): not outputs, not checksummed.
_PRIVATE = {"done.json", "checkpoint.pt", "best.pt"}


def _outputs(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): sha256_file(p)
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name not in _PRIVATE and not p.name.startswith(".")
    }


def _check_outputs(name: str, path: Path, recorded: dict[str, str]) -> None:
    for rel, digest in recorded.items():
        f = path / rel
        if not f.is_file():
            problem = "is missing"
        elif sha256_file(f) != digest:
            problem = "is damaged (sha256 differs from when the stage finished)"
        else:
            continue
        raise PocketVitError(
            f"stage {name}: output {f} {problem}; it will not be trusted. Delete {path} to recompute this stage "
            "(or rerun with --fresh to recompute everything)"
        )


@dataclass
class StageResult:
    name: str
    key: str  # hash of config + inputs
    path: Path
    meta: dict[str, Any]
    seconds: float
    cached: bool


def _seed_stage(seed: int, name: str) -> None:
    """A stage's random stream depends on the recipe seed and its own name only, not on which earlier stages
    were computed or cached in this run (a cached distill must not change the baseline's initial weights)."""
    import zlib

    import torch

    torch.manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63)


@dataclass
class StageRunner:
    out_dir: Path
    fresh: bool = False
    seed: int = 0  # the recipe's seed: each computed stage starts torch's RNG from (seed, stage name)
    results: dict[str, StageResult] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stages_dir = self.out_dir / "stages"
        from pocketvit.scale import current

        if self.fresh and self.stages_dir.exists() and current().is_zero:
            shutil.rmtree(self.stages_dir)
        current().barrier()
        self.stages_dir.mkdir(parents=True, exist_ok=True)

    def _locate(self, name: str, config: Any, inputs: list[StageResult]) -> tuple[str, Path]:
        key = hash_config({"stage": name, "config": config, "inputs": [i.key for i in inputs]})
        return key, self.stages_dir / f"{name}-{key}"

    def finished(self, name: str, config: Any, inputs: list[StageResult]) -> bool:
        """Whether `run` would reuse this stage (its done.json exists) instead of computing it."""
        return (self._locate(name, config, inputs)[1] / "done.json").exists()

    def run(
        self, name: str, config: Any, inputs: list[StageResult], fn: Callable[[Path], dict[str, Any]],
        computed_elsewhere: str | None = None,
    ) -> StageResult:
        """Reuse the stage when finished, else compute it. `computed_elsewhere` says who just computed it (a side
        process): the finished stage then counts as computed in this build, not cached."""
        key, path = self._locate(name, config, inputs)
        done = path / "done.json"
        from pocketvit.scale import current

        dist = current()  # several processes run the stages together: rank 0 decides and writes the record
        if dist.broadcast(done.exists()):
            import json

            record = json.loads(done.read_text())
            _check_outputs(name, path, record.get("outputs", {}))
            result = StageResult(name, key, path, record["meta"], record["seconds"], cached=computed_elsewhere is None)
            log(f"[green]✓[/green] {name} [dim]({computed_elsewhere or 'cached'}, {path.name})[/dim]")
        else:
            path.mkdir(parents=True, exist_ok=True)
            log(f"[bold]▶ {name}[/bold] [dim]({path.name})[/dim]")
            start = time.monotonic()
            _seed_stage(self.seed, name)
            meta = fn(path)
            seconds = time.monotonic() - start
            dist.barrier()  # every rank's files are in place before rank 0 checksums them
            if dist.is_zero:
                write_json(done, {"meta": meta, "seconds": seconds, "config": config, "outputs": _outputs(path)})
            dist.barrier()
            if not dist.is_zero:  # every rank goes on with rank 0's record
                import json

                meta = json.loads(done.read_text())["meta"]
            result = StageResult(name, key, path, meta, seconds, cached=False)
            log(f"[green]✓[/green] {name} [dim]{seconds:.1f}s[/dim]")
        self.results[name] = result
        return result

    def summary(self) -> dict[str, dict[str, Any]]:
        return {n: {"seconds": round(r.seconds, 2), "cached": r.cached} for n, r in self.results.items()}
