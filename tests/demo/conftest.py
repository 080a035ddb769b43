"""Fixtures for the demo tests: the tiny bundle, a short Fashion-MNIST video and an image folder."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

CV2_REASON = "the demo needs OpenCV: pip install 'pocketvit[demo]'"


def _cv2():
    # Imported when a fixture needs it, not at collection: without OpenCV the demo tests skip
    # (each test module calls pytest.importorskip) instead of breaking collection of the suite.
    return pytest.importorskip("cv2", reason=CV2_REASON)

N_FRAMES = 20
SIDE = 112  # 28x28 Fashion-MNIST upscaled 4x, as a camera would see a bigger picture


@pytest.fixture(scope="session")
def bundle(tiny_build) -> Path:
    return tiny_build / "bundle"


@pytest.fixture(scope="session")
def target(bundle) -> str:
    """The target the tests run: onnx or litert when the bundle has them (fast to load), else the first."""
    from pocketvit.runtime import Bundle

    targets = Bundle.open(bundle).targets
    return next((t for t in ("onnx", "litert") if t in targets), targets[0])


@pytest.fixture(scope="session")
def fmnist_images(fmnist_root) -> np.ndarray:
    with gzip.open(fmnist_root / "t10k-images-idx3-ubyte.gz") as f:
        raw = f.read()
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[:N_FRAMES].copy()


def upscale(img28: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    big = cv2.resize(img28, (SIDE, SIDE), interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)


@pytest.fixture(scope="session")
def video(tmp_path_factory, fmnist_images) -> Path:
    cv2 = _cv2()
    path = tmp_path_factory.mktemp("demo-video") / "clip.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (SIDE, SIDE))
    assert w.isOpened()
    for img in fmnist_images:
        w.write(upscale(img))
    w.release()
    return path


def decode_all(path: Path) -> list[np.ndarray]:
    cv2 = _cv2()
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


@pytest.fixture(scope="session")
def video_frames(video) -> list[np.ndarray]:
    frames = decode_all(video)
    assert len(frames) == N_FRAMES
    return frames


@pytest.fixture
def image_folder(tmp_path, fmnist_images) -> Path:
    """5 PNGs, one of them corrupt (bytes that are no image), one text file that is not an image."""
    cv2 = _cv2()
    d = tmp_path / "images"
    d.mkdir()
    for i in range(4):
        cv2.imwrite(str(d / f"item{i}.png"), upscale(fmnist_images[i]))
    (d / "item2b.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    (d / "notes.txt").write_text("not an image, not a video: ignored\n")
    return d
