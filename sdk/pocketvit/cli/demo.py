"""`pocketvit demo`: live camera / video / image-folder demo of a bundle (window, headless or MJPEG)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Annotated

import typer

from pocketvit.cli.common import PROMPTS_HELP, DebugOpt, VerboseOpt, err_console, handle_errors, split_prompts

BundleArg = Annotated[Path, typer.Argument(help="Bundle folder or .zip (e.g. runs/fashion-mnist/bundle).")]


def _size(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"expected WIDTHxHEIGHT like 640x480, got {value!r}") from None
    return w, h


def _sigterm(signum, frame):  # systemd stops the service with SIGTERM: finish like Ctrl-C
    raise KeyboardInterrupt


@handle_errors
def demo(
    bundle: BundleArg,
    source: Annotated[
        str,
        typer.Option("--source", "-s", help="Camera index (0), /dev/videoN, video file, image or folder, "
                     "rtsp:// URL, GStreamer pipeline (contains '!'), or 'picam'."),
    ] = "0",
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="Target to run (onnx, litert, executorch, ...); default: first available.")
    ] = None,
    headless: Annotated[bool, typer.Option("--headless", help="No window: write to --out and/or serve --mjpeg.")] = False,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder for frames.jsonl, annotated frames (headless) and snapshots.")
    ] = None,
    save: Annotated[str, typer.Option("--save", help="Headless annotated frames: jpg (frames/NNNNNN.jpg), mp4 (demo.mp4) or none.")] = "jpg",
    max_frames: Annotated[int | None, typer.Option("--max-frames", "-n", help="Stop after this many processed frames.")] = None,
    mjpeg: Annotated[
        int | None, typer.Option("--mjpeg", help="Serve the annotated view as an MJPEG stream on this port (0: any free port).")
    ] = None,
    mjpeg_host: Annotated[
        str, typer.Option("--mjpeg-host", help="Address the stream listens on; 0.0.0.0 exposes it to the network (no authentication).")
    ] = "127.0.0.1",
    input_color: Annotated[str, typer.Option("--input-color", help="Colour order of the source's frames: BGR (OpenCV), RGB or GRAY.")] = "BGR",
    topk: Annotated[int, typer.Option("--topk", "-k", help="Labels per frame in frames.jsonl.")] = 3,
    loop: Annotated[bool, typer.Option("--loop", help="Start a video, image or folder again at its end.")] = False,
    fps: Annotated[
        float | None, typer.Option("--fps", help="Play a file source at this rate like a camera (frames may drop). "
                                      "Default: the video's rate in a window, every frame as fast as possible headless.")
    ] = None,
    retries: Annotated[int, typer.Option("--retries", help="Reconnect attempts for a camera or stream (backoff 0.5 s doubling to 4 s).")] = 3,
    camera_size: Annotated[str | None, typer.Option("--camera-size", help="Capture size asked of a camera, e.g. 640x480.")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="Runtime threads (default: the runtime's choice).")] = None,
    no_exits: Annotated[bool, typer.Option("--no-exits", help="Run the full model even when the bundle has early exits.")] = False,
    prompts: Annotated[str | None, typer.Option("--prompts", help=PROMPTS_HELP)] = None,
    bench: Annotated[
        bool, typer.Option("--bench", help="After the run, time the runtime alone on the same frames and print demo FPS, runtime FPS and their ratio.")
    ] = False,
    bench_rounds: Annotated[int, typer.Option("--bench-rounds", min=1, help="--bench: interleaved rounds (demo run, runtime alone, predict); medians.")] = 5,
    debug: DebugOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run a bundle on a camera, video or image folder: a window with the label, score, FPS, latency and
    exit taken (keys: q quit, p pause, t switch target, s snapshot), or --headless to --out / --mjpeg."""
    from pocketvit.demo import DemoError, DemoOptions, benchmark, run_demo

    if bench and not (headless and out is not None):
        raise DemoError("--bench runs with --headless --out DIR on a video file or image folder")
    if bench and loop:
        raise DemoError("--bench and --loop do not go together: the benchmark needs a source that ends")
    if out is not None:
        from pocketvit.runtime.io import writable_dir

        writable_dir(out, "--out")
    try:
        signal.signal(signal.SIGTERM, _sigterm)
    except ValueError:  # not the main thread (called from Python code): leave signals alone
        pass
    opts = DemoOptions(
        bundle=bundle, source=source, target=target, headless=headless, out=out, save=save,
        max_frames=max_frames, mjpeg_port=mjpeg, mjpeg_host=mjpeg_host, input_color=input_color.upper(),
        topk=topk, loop=loop, fps=fps, retries=retries, camera_size=_size(camera_size), num_threads=threads,
        use_exits=not no_exits, prompts=split_prompts(prompts),
    )
    try:
        result = run_demo(
            opts,
            log=lambda m: err_console.print(m, highlight=False),
            warn=lambda m: err_console.print(f"[yellow]warning:[/yellow] {m}", highlight=False),
        )
    except KeyboardInterrupt:  # during start-up (camera retries, model loading); the loop ends cleanly itself
        err_console.print("\ninterrupted")
        raise SystemExit(130) from None
    dropped = f", {result.dropped} dropped (latest-frame queue)" if result.dropped else ""
    err_console.print(
        f"{result.frames} frames in {result.seconds:.1f} s: {result.fps:.1f} FPS on {result.target}{dropped}"
        + (f"; results in {out}" if out is not None else ""),
        highlight=False,
    )
    if bench:
        b = benchmark(bundle, source, target=result.target, max_frames=max_frames, input_color=input_color.upper(),
                      demo_fps=result.fps, demo_stage_ms=result.stage_ms, num_threads=threads, rounds=bench_rounds)
        for line in b.lines():
            print(line)
        (out / "bench.json").write_text(json.dumps(b.to_dict(), indent=2) + "\n")
