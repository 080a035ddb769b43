"""The Android app's pre/postprocessing (apps/android/.../Preprocess.kt, plain Kotlin) against the Python
runtime: pocketvit writes test vectors from the tiny bundle, Debian's kotlinc compiles Preprocess.kt with
a small harness, and java runs it on the vectors.

Tolerance: the Kotlin resize is Pillow's fixed-point BILINEAR algorithm, so the tensors are expected to
be equal; the assertion allows 1e-4. The jar is cached in pytest's cache, keyed by the sources' hash."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pocketvit.demo.vectors import write_vectors
from pocketvit.runtime import Bundle

from tests.conftest import ROOT

PREPROCESS_KT = ROOT / "apps" / "android" / "app" / "src" / "main" / "java" / "dev" / "pocketvit" / "Preprocess.kt"
HARNESS_KT = Path(__file__).parent / "kotlin" / "VectorsMain.kt"
TOLERANCE = 1e-4


def _preferred_target(bundle: Path) -> str:
    targets = Bundle.open(bundle).targets
    return next((t for t in ("onnx", "litert") if t in targets), targets[0])


def test_vectors_are_written(tiny_build, tmp_path):
    bundle = tiny_build / "bundle"
    cases = write_vectors(bundle, tmp_path, target=_preferred_target(bundle))
    names = [c["name"] for c in cases]
    assert len(names) == 6 and sum(c["has_logits"] for c in cases) == 2
    for c in cases:
        d = tmp_path / c["name"]
        assert (d / "image.raw").stat().st_size == c["height"] * c["width"] * c["channels"]
        assert np.fromfile(d / "tensor.bin", "<f4").size == int(np.prod(c["tensor_shape"]))
        json.loads((d / "manifest.json").read_text())["input"]


def _ensure_kotlinc() -> str:
    if shutil.which("kotlinc") is None:
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            pytest.skip("kotlinc is missing and apt-get (as root) is not available to install Debian's kotlin")
        r = subprocess.run(["apt-get", "install", "-y", "-qq", "kotlin"], check=False, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True, timeout=900)
            r = subprocess.run(["apt-get", "install", "-y", "-qq", "kotlin"], check=False, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0 and shutil.which("kotlinc"), f"apt-get install kotlin failed: {r.stderr[-500:]}"
    if shutil.which("java") is None:
        pytest.skip("java is missing (kotlin's Debian package depends on a JRE)")
    return shutil.which("kotlinc")


def _jar(cache_dir: Path) -> Path:
    kotlinc = _ensure_kotlinc()
    key = hashlib.sha256(PREPROCESS_KT.read_bytes() + b"\0" + HARNESS_KT.read_bytes()).hexdigest()[:16]
    jar = cache_dir / f"vectors-{key}.jar"
    if not jar.exists():
        tmp = jar.with_suffix(".tmp.jar")
        r = subprocess.run([kotlinc, str(PREPROCESS_KT), str(HARNESS_KT), "-include-runtime", "-d", str(tmp)],
                           check=False, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0 and tmp.exists(), f"kotlinc failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        tmp.replace(jar)
    return jar


@pytest.mark.slow  # kotlinc takes 12 s or more on a cold cache (plus installing kotlin once)
def test_kotlin_preprocessing_matches_python_runtime(tiny_build, tmp_path, request):
    bundle = tiny_build / "bundle"
    vectors = tmp_path / "vectors"
    cases = write_vectors(bundle, vectors, target=_preferred_target(bundle))
    jar = _jar(Path(request.config.cache.mkdir("kotlin-vectors")))
    out = tmp_path / "kotlin"
    r = subprocess.run(["java", "-jar", str(jar), str(vectors), str(out)], check=False, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"done: {len(cases)} cases" in r.stdout
    manifest = json.loads((bundle / "manifest.json").read_text())
    want_targets = ",".join(f"{t}={e['runtime']}:{e['sha256'][:8]}" for t, e in manifest["files"].items())
    assert f"targets [{want_targets}]" in r.stdout  # Preprocess.kt parses the manifest's files too
    for c in cases:
        want = np.fromfile(vectors / c["name"] / "tensor.bin", "<f4")
        got = np.fromfile(out / c["name"] / "tensor.bin", "<f4")
        assert got.shape == want.shape, c["name"]
        np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE, err_msg=c["name"])
        if c["has_logits"]:
            want_top = json.loads((vectors / c["name"] / "topk.json").read_text())
            got_top = json.loads((out / c["name"] / "topk.json").read_text())
            assert [lab for lab, _ in got_top] == [lab for lab, _ in want_top], c["name"]
            np.testing.assert_allclose([s for _, s in got_top], [s for _, s in want_top], atol=1e-6)
