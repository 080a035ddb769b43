"""pocketvit.demo: the camera / video demo on top of pocketvit.runtime (never imports torch).

    from pocketvit.demo import DemoOptions, run_demo
    r = run_demo(DemoOptions("runs/fashion-mnist/bundle", source="clip.mp4", headless=True, out=Path("out")))
    r.frames, r.fps

OpenCV is imported on first use (pip install 'pocketvit[demo]'), so importing this package is cheap.
"""

from .app import DemoOptions, DemoResult, run_demo
from .bench import BenchResult, benchmark, decode_frames
from .capture import CaptureThread, FrameSlot
from .errors import CameraError, DemoError, SourceError
from .sources import Frame, Retry, Source, open_source

__all__ = [
    "BenchResult",
    "CameraError",
    "CaptureThread",
    "DemoError",
    "DemoOptions",
    "DemoResult",
    "Frame",
    "FrameSlot",
    "Retry",
    "Source",
    "SourceError",
    "benchmark",
    "decode_frames",
    "open_source",
    "run_demo",
]
