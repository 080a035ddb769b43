"""The demo loop: a capture thread feeds a one-slot queue; the main thread predicts, annotates and
shows (window), streams (MJPEG) or writes (headless) each frame.

Frame policy: live sources always keep only the newest frame, so latency stays one frame behind the
camera however slow the model is. Files and folders processed headless go through every frame,
unpaced: there is no real-time constraint, and a results file that silently missed frames would
be worth less. Files shown in a window (or with --fps) are played at their own rate and treated
like a camera.
"""

from __future__ import annotations

import os
import queue
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pocketvit.runtime import Bundle, Predictor, load

from ._cv import get_cv2, has_gui
from .capture import CaptureThread, EndOfStream, FrameSlot, SourceFailed
from .errors import CameraError, DemoError, SourceError
from .mjpeg import MjpegServer
from .outputs import SAVE_MODES, DemoOutputs, encode_jpeg
from .overlay import FpsMeter, ViewInfo, annotate
from .sources import Frame, Retry, Source, open_source
from .writer import OutputWorker

WINDOW = "pocketvit demo"
SWITCH_INTERVAL_S = 0.0005
EVERY_FRAME_DEPTH = 4  # frames decoded (and preprocessed) ahead of the model when none is dropped
IMAGE_FOLDER_FPS = 2.0  # how long each image of a folder stays on screen in window mode

Log = Callable[[str], None]


@dataclass
class DemoOptions:
    bundle: str | os.PathLike | Bundle
    source: str = "0"
    target: str | None = None
    headless: bool = False
    out: Path | None = None
    save: str = "jpg"  # headless annotated frames: jpg | mp4 | none
    max_frames: int | None = None
    mjpeg_port: int | None = None
    mjpeg_host: str = "127.0.0.1"
    input_color: str = "BGR"
    topk: int = 3
    loop: bool = False
    fps: float | None = None  # pace file sources at this rate (then frames may be dropped)
    retries: int = 3
    camera_size: tuple[int, int] | None = None
    stall_timeout_s: float = 10.0
    num_threads: int | None = None
    use_exits: bool = True  # False: the full model even when the bundle has early exits
    prompts: list[str] | None = None  # zero-shot bundles: score only these of the bundle's classes


@dataclass
class DemoResult:
    frames: int = 0
    seconds: float = 0.0
    dropped: int = 0
    target: str = ""
    out: Path | None = None
    mjpeg_url: str | None = None
    snapshots: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # mean ms per frame: wait, predict (inference thread); annotate, output (the output thread when headless);
    # handoff (inference thread waiting for the output thread)
    stage_ms: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def _check_options(o: DemoOptions) -> None:
    if o.save not in SAVE_MODES:
        raise DemoError(f"--save must be one of {', '.join(SAVE_MODES)}, got {o.save!r}")
    if o.max_frames is not None and o.max_frames < 1:
        raise DemoError(f"--max-frames must be at least 1, got {o.max_frames}")
    if o.fps is not None and o.fps <= 0:
        raise DemoError(f"--fps must be positive, got {o.fps}")
    if o.input_color.upper() not in ("BGR", "RGB", "GRAY"):
        raise DemoError(f"--input-color must be BGR, RGB or GRAY, got {o.input_color!r}")
    if o.headless and o.out is None and o.mjpeg_port is None:
        raise DemoError(
            "--headless needs somewhere to put the results: --out DIR (annotated frames + frames.jsonl) "
            "and/or --mjpeg PORT (watch in a browser)"
        )
    if not o.headless:
        if not has_gui():
            raise DemoError(
                "this OpenCV has no window support (it is opencv-python-headless). Run headless instead: "
                "`--headless --mjpeg 8080` and open http://127.0.0.1:8080, or `--headless --out DIR`; "
                "for a window: pip uninstall opencv-python-headless && pip install opencv-python"
            )
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise DemoError(
                "no display (DISPLAY is not set): run with `--headless --mjpeg 8080` (browser view) or "
                "`--headless --out DIR`"
            )


class _Targets:
    """Predictors for the bundle's targets, loaded on first use, for the window's `t` key."""

    def __init__(self, bundle: Bundle, first: str | None, num_threads: int | None, use_exits: bool = True,
                 prompts: list[str] | None = None):
        self.bundle = bundle
        self.num_threads = num_threads
        self.use_exits = use_exits
        self.prompts = prompts
        self._loaded: dict[str, Predictor] = {}
        self.current = self._load(first)

    def _load(self, target: str | None) -> Predictor:
        p = load(self.bundle, target=target, num_threads=self.num_threads, use_exits=self.use_exits)
        if self.prompts:
            try:
                p.use_prompts(self.prompts, num_threads=self.num_threads)
            except BaseException:
                p.close()
                raise
        self._loaded[p.target] = p
        return p

    def cycle(self, warn: Log) -> Predictor:
        names = [t for t in self.bundle.targets if self.bundle.runtime_of(t) != "coreml" or sys.platform == "darwin"]
        i = names.index(self.current.target) if self.current.target in names else -1
        for step in range(1, len(names)):
            name = names[(i + step) % len(names)]
            try:
                self.current = self._loaded.get(name) or self._load(name)
                return self.current
            except Exception as e:  # noqa: BLE001 - a runtime missing on this machine: say so, try the next one
                warn(f"target {name} is not available here: {e}")
        return self.current

    def close(self) -> None:
        for p in self._loaded.values():
            p.close()


def _pace(o: DemoOptions, src: Source) -> tuple[bool, float | None]:
    """(drop frames?, pace rate) for this source and mode; see the module docstring."""
    if src.live:
        return True, None
    if o.fps is not None:
        return True, o.fps
    if o.headless:
        return False, None
    return True, src.fps or IMAGE_FOLDER_FPS


def run_demo(options: DemoOptions, log: Log = print, warn: Log | None = None) -> DemoResult:
    """Run the demo until the source ends, ``max_frames`` frames are done, `q` is pressed or Ctrl-C.

    ``log`` gets progress lines (stream URL, snapshots, target switches), ``warn`` warnings
    (skipped files, reconnects); both default to print.
    """
    o = options
    result = DemoResult(out=o.out)

    def _warn(msg: str) -> None:
        result.warnings.append(msg)
        (warn or log)(msg)

    cv2 = get_cv2()
    _check_options(o)
    bundle = o.bundle if isinstance(o.bundle, Bundle) else Bundle.open(o.bundle)
    window = not o.headless
    # The source first: a wrong path or a missing camera fails before seconds of runtime loading.
    src = open_source(o.source, loop=o.loop, retry=Retry(attempts=max(1, o.retries + 1)),
                      size=o.camera_size, warn=_warn)
    try:
        targets = _Targets(bundle, o.target, o.num_threads, o.use_exits, o.prompts)
    except BaseException:
        src.close()
        raise
    p = targets.current
    # Which engine really runs: ONNX Runtime's providers (TensorRT / CUDA / CPU), LiteRT's interpreter
    # module (ai_edge_litert or tflite_runtime).
    engine = getattr(p.backend, "providers", None) or [getattr(p.backend, "interpreter_module", "")]
    log(f"{src.description} -> {p.target} ({p.runtime}{': ' + ', '.join(engine) if any(engine) else ''})")
    drop, pace = _pace(o, src)
    slot = FrameSlot(drop=drop, depth=EVERY_FRAME_DEPTH)
    switch = sys.getswitchinterval()
    # every-frame mode: the capture thread also preprocesses, overlapping inference of the previous frame
    capture = CaptureThread(src, slot, pace_fps=pace, prepare=None if drop else _preparer(targets, o.input_color))
    outputs = server = None
    try:
        outputs = DemoOutputs(o.out, o.save, video_fps=pace or src.fps or 10.0, save_frames=o.headless)
        if o.mjpeg_port is not None:
            server = MjpegServer(o.mjpeg_port, o.mjpeg_host)
            result.mjpeg_url = server.url
            log(f"MJPEG stream: {server.url}")
            if o.mjpeg_host not in ("127.0.0.1", "localhost", "::1"):
                _warn(f"the stream on {o.mjpeg_host} has no authentication: anyone who can reach it can watch")
        if window:
            # GUI_NORMAL: no Qt toolbar over the view; the keys below are the controls.
            cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE | getattr(cv2, "WINDOW_GUI_NORMAL", 0))
            log("keys: q quit, p pause, t switch target, s save snapshot")
        # The capture, output and inference threads share the GIL: with Python's default 5 ms switch interval the
        # inference thread could wait up to 5 ms to get it back after each runtime call; 0.5 ms bounds that
        # (part of the measured pipeline; its own share of the gain was not measured separately).
        sys.setswitchinterval(min(switch, SWITCH_INTERVAL_S))
        capture.start()
        _loop(o, targets, src, slot, outputs, server, window, result, log, _warn)
    finally:
        sys.setswitchinterval(switch)
        capture.stop()
        result.dropped = slot.dropped
        result.target = targets.current.target
        if outputs is not None:
            outputs.close()
        if server is not None:
            server.close()
        if window:
            cv2.destroyAllWindows()
            cv2.waitKey(1)
        targets.close()
    return result


def _preparer(targets: _Targets, input_color: str) -> Callable[[Frame], None]:
    def prepare(frame: Frame) -> None:
        p = targets.current
        t = time.perf_counter()
        try:
            frame.tensor = p.preprocess(frame.image, input_color)
        except (ValueError, TypeError):
            return  # the inference loop preprocesses it again and reports the problem
        frame.preprocess_ms = (time.perf_counter() - t) * 1e3
        frame.prepared_by = p

    return prepare


def _emit(item: tuple, outputs: DemoOutputs, server: MjpegServer | None, need_image: bool, stage: dict):
    """One processed frame's outputs: annotated view, frames.jsonl line, JPEG / video frame, MJPEG; returns the view."""
    n, image, info, rec = item
    ta = time.monotonic()
    view = annotate(image, info) if need_image else None
    to = time.monotonic()
    stage["annotate"] += to - ta
    outputs.record(rec)
    jpeg = encode_jpeg(view) if server is not None or outputs.save == "jpg" else None
    if server is not None:
        server.publish(jpeg, rec)
    outputs.frame(n, view, jpeg)
    stage["output"] += time.monotonic() - to
    return view


def _loop(o, targets, src, slot, outputs, server, window, result, log, warn) -> None:
    """Window mode annotates and shows on this thread (OpenCV's GUI wants it); headless hands each frame's
    outputs to an OutputWorker, so this thread only waits for frames and predicts."""
    meter = FpsMeter()
    stage = {"wait": 0.0, "predict": 0.0, "annotate": 0.0, "output": 0.0, "handoff": 0.0}
    need_image = window or server is not None or outputs.wants_image
    worker = None if window else OutputWorker(lambda item: _emit(item, outputs, server, need_image, stage))
    if worker is not None:
        worker.start()
    t0 = time.monotonic()
    try:
        _frames(o, targets, src, slot, outputs, server, window, result, log, warn, meter, stage, need_image, worker)
    finally:
        if worker is not None:  # write what is queued; a write error is raised unless another one is on its way
            worker.close(raise_error=sys.exc_info()[0] is None)
            stage["handoff"] = worker.handoff_s
    result.seconds = time.monotonic() - t0  # the last frames' writing included
    n = result.frames
    result.stage_ms = {k: (v / n * 1e3 if n else 0.0) for k, v in stage.items()}


def _frames(o, targets, src, slot, outputs, server, window, result, log, warn, meter, stage, need_image,
            worker) -> None:
    cv2 = get_cv2()
    paused = False
    last = None  # (frame, prediction, annotated view) of the newest frame
    n = 0
    t0 = last_frame_t = time.monotonic()
    poll = 0.02 if window else 0.5
    try:
        while o.max_frames is None or n < o.max_frames:
            if window:
                key = cv2.waitKey(1) & 0xFF
                if key in (ord("q"), 27) or cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1 and n > 0:
                    break
                if key == ord("p"):
                    paused = not paused
                elif key == ord("t"):
                    before = targets.current.target
                    if targets.cycle(warn).target != before:
                        log(f"target: {before} -> {targets.current.target}")
                elif key == ord("s") and last is not None:
                    path = outputs.snapshot(last[2])
                    result.snapshots.append(path)
                    log(f"snapshot: {path}")
                if paused:
                    if last is not None:
                        cv2.imshow(WINDOW, annotate(last[0].image, _info(last, targets, meter, paused=True)))
                    last_frame_t = time.monotonic()
                    time.sleep(0.03)
                    continue
            tw = time.monotonic()
            try:
                item = slot.get(timeout=poll)
            except queue.Empty:
                stage["wait"] += time.monotonic() - tw
                idle = time.monotonic() - last_frame_t
                if idle > o.stall_timeout_s:
                    kind = CameraError if src.live else SourceError
                    raise kind(
                        f"{src.description}: no frame for {idle:.0f} s (the device or stream hangs); "
                        "check the cable or the network and start again"
                    ) from None
                continue
            stage["wait"] += time.monotonic() - tw
            if isinstance(item, EndOfStream):
                break
            if isinstance(item, SourceFailed):
                raise item.error
            frame = item
            last_frame_t = time.monotonic()

            tp = time.monotonic()
            predictor = targets.current
            if frame.tensor is not None and frame.prepared_by is predictor:
                pred = predictor.predict_tensor(frame.tensor, topk=o.topk)
                pre_ms = frame.preprocess_ms
            else:
                try:
                    pred = predictor.predict(frame.image, input_color=o.input_color, topk=o.topk)
                except (ValueError, TypeError) as e:
                    raise DemoError(f"{frame.source}: cannot preprocess frame {frame.index} ({e}); "
                                    "check --input-color") from None
                pre_ms = predictor.last_preprocess_ms
            stage["predict"] += time.monotonic() - tp
            fps = meter.tick()
            rec = {
                "frame": n,
                "time": round(time.monotonic() - t0, 4),
                "label": pred.label,
                "score": pred.score,
                "latency_ms": round(pred.latency_ms, 4),
                "exit": pred.exit,
                "target": predictor.target,
                "source": frame.source,
                "source_frame": frame.index,
                "fps": round(fps, 2),
                "topk": [[lab, s] for lab, s in pred.topk],
            }
            item = (n, frame.image, _info((frame, pred, None), targets, meter, pre_ms=pre_ms), rec)
            if worker is not None:
                worker.submit(item)
                last = (frame, pred, None)
            else:
                view = _emit(item, outputs, server, need_image, stage)
                last = (frame, pred, view)
                to = time.monotonic()
                cv2.imshow(WINDOW, view)
                stage["output"] += time.monotonic() - to
            n += 1
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        result.frames = n


def _info(last, targets, meter, paused: bool = False, pre_ms: float | None = None) -> ViewInfo:
    _frame, pred, _ = last
    p = targets.current
    return ViewInfo(
        label=pred.label,
        score=pred.score,
        fps=meter.fps,
        latency_ms=pred.latency_ms,
        preprocess_ms=p.last_preprocess_ms if pre_ms is None else pre_ms,
        exit=pred.exit,
        target=p.target,
        paused=paused,
    )
