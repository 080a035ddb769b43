"""How much of the runtime's speed the demo keeps: the demo's end-to-end FPS on a video (decode,
preprocess, inference, overlay, JPEG, frames.jsonl) next to the runtime's throughput on the very
same frames, already decoded and preprocessed, in interleaved rounds (medians). A measurement to
print, not a test assertion."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pocketvit.runtime import Bundle, load

from .errors import DemoError
from .sources import open_source


@dataclass
class BenchResult:
    frames: int
    target: str
    demo_fps: float  # `pocketvit demo --headless` end to end
    predict_fps: float  # Predictor.predict on decoded frames in memory: preprocessing + runtime
    runtime_fps: float  # the runtime alone on preprocessed tensors (batch 1, as the demo runs it)
    demo_stage_ms: dict | None = None
    rounds: int = 1

    @property
    def ratio(self) -> float:
        """demo FPS / runtime FPS: 1.0 would mean the demo adds nothing around the model."""
        return self.demo_fps / self.runtime_fps if self.runtime_fps > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}

    def lines(self) -> list[str]:
        out = [
            f"frames: {self.frames}  target: {self.target}  (medians of {self.rounds} interleaved rounds)",
            f"demo (decode + predict + overlay + output):  {self.demo_fps:9.1f} FPS",
            f"Predictor.predict (preprocess + runtime):    {self.predict_fps:9.1f} FPS",
            f"runtime alone (preprocessed tensors):        {self.runtime_fps:9.1f} FPS",
            (
                f"ratio demo / runtime: {self.ratio:.3f}   demo / predict: "
                f"{self.demo_fps / self.predict_fps if self.predict_fps else 0:.3f}"
            ),
        ]
        if self.demo_stage_ms:
            parts = ", ".join(f"{k} {v:.2f}" for k, v in self.demo_stage_ms.items())
            out.append(f"demo time per frame (ms): {parts}")
        return out


def decode_frames(source: str, max_frames: int | None = None) -> list[np.ndarray]:
    """All frames (BGR) of a video file, image or folder, in the order the demo reads them."""
    src = open_source(source)
    if src.live:
        src.close()
        raise DemoError("--bench needs a video file or an image folder as --source (a camera's frames differ per run)")
    frames = []
    try:
        for f in src.frames(threading.Event()):
            frames.append(f.image)
            if max_frames is not None and len(frames) >= max_frames:
                break
    finally:
        src.close()
    return frames


def _rate(fn, items) -> float:
    t = time.perf_counter()
    for it in items:
        fn(it)
    return len(items) / (time.perf_counter() - t)


def _demo_run(bundle, source, target, max_frames, input_color, num_threads) -> tuple[float, dict]:
    """(FPS, per-stage ms) of one headless demo run writing JPEGs to a temporary folder."""
    from .app import DemoOptions, run_demo

    with tempfile.TemporaryDirectory(prefix="pocketvit-bench-") as tmp:
        r = run_demo(
            DemoOptions(bundle=bundle, source=source, target=target, headless=True, out=Path(tmp),
                        max_frames=max_frames, input_color=input_color, num_threads=num_threads),
            log=lambda s: None,
        )
    return r.fps, r.stage_ms


def benchmark(
    bundle: str | Path | Bundle,
    source: str,
    *,
    target: str | None = None,
    max_frames: int | None = 300,
    input_color: str = "BGR",
    demo_fps: float | None = None,
    demo_stage_ms: dict | None = None,
    rounds: int = 5,
    num_threads: int | None = None,
) -> BenchResult:
    """Measure (see module docstring) in ``rounds`` interleaved rounds (a headless demo run, the runtime
    alone, Predictor.predict), so a busy moment of the machine hits all three; medians. ``demo_fps`` (and
    ``demo_stage_ms``): a demo run just made on the same source and frames, used as the first round's."""
    frames = decode_frames(source, max_frames)
    if not frames:
        raise DemoError(f"--bench: {source} gave no frames")
    demos = [(demo_fps, demo_stage_ms)] if demo_fps is not None else []
    with load(bundle, target=target, num_threads=num_threads, warmup=3) as p:
        tensors = [p.preprocess(f, input_color) for f in frames]
        runtime, predict = [], []
        for r in range(rounds):
            if len(demos) <= r:
                demos.append(_demo_run(bundle, source, p.target, max_frames, input_color, num_threads))
            runtime.append(_rate(lambda x: p.predict_array(x, topk=3), tensors))
            predict.append(_rate(lambda f: p.predict(f, input_color=input_color, topk=3), frames))
        runtime_fps, predict_fps = statistics.median(runtime), statistics.median(predict)
        name = p.target
    demos.sort(key=lambda d: d[0])
    fps, stage_ms = demos[len(demos) // 2]  # the median run (the upper one of an even count)
    return BenchResult(len(frames), name, fps, predict_fps, runtime_fps, stage_ms, rounds)
