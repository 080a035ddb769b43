"""The labels-only baseline stage (same student, same budget, labels instead of the teacher cache), and running it
in a second process beside distillation on a CPU with several cores.

Distillation and the baseline are independent trainings of the same small student. On a CPU neither uses two
cores well (small tensors, depthwise convs), so `pocketvit build` trains the baseline in a spawned process,
one half of the threads each, while the main process distills; the baseline stage writes its folder exactly as
it would inline (`done.json` last), and the main process then picks it up as a finished stage. A failed or
interrupted side process leaves no `done.json`: the stage resumes from its checkpoint in the main process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.markup import escape

from pocketvit.errors import PocketVitError
from pocketvit.pipeline.plan import baseline_plan, distill_plan
from pocketvit.progress import log

if TYPE_CHECKING:  # no import cycle at run time
    from pocketvit.data.augment import AugmentConfig
    from pocketvit.data.datasets import Splits
    from pocketvit.pipeline.runner import StageResult, StageRunner
    from pocketvit.recipe import Recipe


def baseline_config(recipe: Recipe, distill_cfg: dict[str, Any], splits: Splits) -> dict[str, Any]:
    """The baseline stage's hash config: what trains the student, minus the KD temperature, with the epochs (and
    the early-stopping patience) that give it distillation's optimizer steps over the labeled images alone (the
    same as distillation's without data.unlabeled)."""
    plan = baseline_plan(recipe, len(splits.train), len(splits.labeled_train))
    cfg = {k: v for k, v in distill_cfg.items() if k != "temperature"} | {"epochs": plan.epochs}
    if cfg.get("patience") is not None:
        cfg["patience"] = baseline_patience(recipe, splits)
    return {"student": recipe.student.model_dump(), "distill": cfg,
            "label_smoothing": recipe.distill.baseline_label_smoothing}


def baseline_patience(recipe: Recipe, splits: Splits) -> int | None:
    """distill.patience (in distillation's epochs) as the same number of optimizer steps in the baseline's epochs."""
    d = recipe.distill
    if d.patience is None:
        return None
    mine = baseline_plan(recipe, len(splits.train), len(splits.labeled_train))
    return -(-d.patience * distill_plan(recipe, len(splits.train)).steps_per_epoch // mine.steps_per_epoch)


def baseline_stage_fn(recipe: Recipe, splits: Splits, aug: AugmentConfig) -> Callable[[Path], dict[str, Any]]:
    def stage(path: Path) -> dict[str, Any]:
        from pocketvit.distill.supervised import evaluate, train_on_labels
        from pocketvit.models.weights import build_from_meta, model_meta, save_weights, weights_path

        d = recipe.distill
        epochs = baseline_plan(recipe, len(splits.train), len(splits.labeled_train)).epochs
        patience = baseline_patience(recipe, splits)
        model = build_from_meta(recipe.student.model_dump(), splits)
        summary: dict[str, Any] = {}
        train_on_labels(model, splits, aug, recipe.seed, epochs, d.batch_size, d.lr, d.weight_decay,
                        d.baseline_label_smoothing, path, "baseline (labels only)", fast=d.fast_train,
                        patience=patience, summary=summary)
        save_weights(model, weights_path(path, "student"))
        meta = model_meta(model, recipe.student.arch, recipe.student.options, splits)
        meta["val_top1"] = evaluate(model, splits, splits.val, "baseline val") if len(splits.val) else None
        meta["test_top1"] = evaluate(model, splits, splits.test, "baseline test")
        return meta | {"train": summary}

    return stage


def split_threads(total: int) -> tuple[int, int]:
    """(main process, side process) intra-op threads: halves of `total`, at least one each."""
    side = max(1, total // 2)
    return max(1, total - side), side


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def side_process_reason(recipe: Recipe, device: torch.device, world_size: int) -> str | None:
    """None when the baseline may train beside distillation, else why not (logged)."""
    if not recipe.distill.baseline_in_parallel:
        return "distill.baseline_in_parallel is false"
    if device.type != "cpu":
        return f"training runs on {device.type}"
    if world_size > 1:
        return "a distributed run trains stages one after the other"
    if _usable_cores() < 2:
        return "one CPU core"
    return None


def _side_main(recipe: Recipe, out_dir: str, data_key: str, config: dict[str, Any], threads: int,
               log_path: str) -> None:
    """Entry point of the spawned process: the baseline stage, nothing else, its output in `log_path`."""
    with open(log_path, "a", buffering=1) as out:
        sys.stdout = sys.stderr = out  # rich's console writes to sys.stderr: plain lines with ETA, no live bar
        try:
            _side_stage(recipe, Path(out_dir), data_key, config, threads)
        except PocketVitError as e:
            print(f"error: {e}", file=out)
            raise SystemExit(2) from None
        except BaseException:  # noqa: BLE001 - the log is the only place the parent can read it from
            traceback.print_exc(file=out)
            raise SystemExit(1) from None


def _side_stage(recipe: Recipe, out_dir: Path, data_key: str, config: dict[str, Any], threads: int) -> None:
    torch.set_num_threads(threads)
    from pocketvit.data import load_dataset
    from pocketvit.data.augment import AugmentConfig
    from pocketvit.pipeline.runner import StageResult, StageRunner

    splits = load_dataset(recipe.data, recipe.seed)
    data = StageResult("data", data_key, out_dir, {}, 0.0, True)
    runner = StageRunner(out_dir, seed=recipe.seed)
    aug = AugmentConfig(**recipe.data.augment.model_dump())
    runner.run("baseline", config, [data], baseline_stage_fn(recipe, splits, aug))


@dataclass
class SideStage:
    """The baseline stage training in a spawned process; its log lines are relayed while it runs."""

    process: Any
    log_path: Path
    _offset: int = 0
    _relaying: Any = None

    @classmethod
    def start(cls, recipe: Recipe, runner: StageRunner, data: StageResult, config: dict[str, Any],
              threads: int) -> SideStage:
        """Start the baseline stage (`config`: its hash config, baseline_config) in a spawned process."""
        log_path = runner.out_dir / "logs" / "baseline.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("")
        ctx = mp.get_context("spawn")  # a clean interpreter: no forked torch thread pools
        proc = ctx.Process(target=_side_main, name="pocketvit-baseline", daemon=True,
                           args=(recipe, str(runner.out_dir), data.key, config, threads, str(log_path)))
        proc.start()
        log(f"[bold]▶ baseline[/bold] [dim](labels only) training in a second process, {threads} thread(s), beside "
            f"distill; log: {log_path}[/dim]")
        side = cls(proc, log_path)
        stop = threading.Event()
        thread = threading.Thread(target=side._relay_until, args=(stop,), name="baseline-log", daemon=True)
        thread.start()
        side._relaying = (stop, thread)
        return side

    def _relay_until(self, stop: threading.Event) -> None:
        while not stop.wait(2.0):
            self.relay()

    def relay(self) -> None:
        """Print what the side process logged since the last call, prefixed."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        whole = chunk[: chunk.rfind(b"\n") + 1]  # whole lines only
        self._offset += len(whole)
        for line in whole.decode("utf-8", errors="replace").splitlines():
            if line.strip():
                log(f"[dim]  \\[baseline] {escape(line)}[/dim]")

    def _stop_relay(self) -> None:
        if self._relaying is not None:
            stop, thread = self._relaying
            stop.set()
            thread.join()
            self._relaying = None
        self.relay()

    def finish(self) -> bool:
        """Wait for the side process; True when it finished the stage. Logs why not otherwise."""
        if self.process.is_alive():
            log("[dim]  waiting for the baseline process…[/dim]")
        self.process.join()
        self._stop_relay()
        if self.process.exitcode != 0:
            log(f"[yellow]baseline process exited with code {self.process.exitcode} (log: {self.log_path}); "
                "training the baseline here instead, from its checkpoint[/yellow]")
            return False
        return True

    def stop(self) -> None:
        """Stop the side process (the main build failed or was interrupted); its stage stays unfinished."""
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=10.0)
            if self.process.is_alive():
                self.process.kill()
        self._stop_relay()
