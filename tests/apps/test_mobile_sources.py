"""apps/android and apps/ios: the pieces that cannot be built here are at least where the READMEs say,
and the shared preprocessing file stays free of Android imports (so the JVM test can compile it)."""

from __future__ import annotations

import re

from tests.conftest import ROOT

ANDROID = ROOT / "apps" / "android"
IOS = ROOT / "apps" / "ios"


def test_android_project_layout():
    for rel in ["settings.gradle.kts", "build.gradle.kts", "app/build.gradle.kts", "app/src/main/AndroidManifest.xml",
                "app/src/main/java/dev/pocketvit/MainActivity.kt", "app/src/main/java/dev/pocketvit/ModelRunner.kt",
                "app/src/main/java/dev/pocketvit/Preprocess.kt", "README.md"]:
        assert (ANDROID / rel).is_file(), rel
    pre = (ANDROID / "app/src/main/java/dev/pocketvit/Preprocess.kt").read_text()
    assert not re.search(r"^import (android|androidx)\.", pre, re.MULTILINE)
    runner = (ANDROID / "app/src/main/java/dev/pocketvit/ModelRunner.kt").read_text()
    assert "org.tensorflow.lite.Interpreter" in runner and "org.pytorch.executorch.Module" in runner
    gradle = (ANDROID / "app/build.gradle.kts").read_text()
    assert "androidx.camera:camera-camera2" in gradle and 'noCompress += listOf("tflite", "pte")' in gradle
    assert "CAMERA" in (ANDROID / "app/src/main/AndroidManifest.xml").read_text()


def test_ios_sources_and_honest_readme():
    for rel in ["PocketVitDemo/PocketVitDemoApp.swift", "PocketVitDemo/ContentView.swift",
                "PocketVitDemo/CameraModel.swift", "PocketVitDemo/Classifier.swift",
                "PocketVitDemo/Preprocess.swift", "project.yml", "README.md"]:
        assert (IOS / rel).is_file(), rel
    assert "VNCoreMLRequest" in (IOS / "PocketVitDemo/Classifier.swift").read_text()
    readme = " ".join((IOS / "README.md").read_text().split())
    assert "Swift cannot be compiled or tested" in readme and "has no Swift toolchain" in readme
    # the port keeps Pillow's fixed-point constants and PIL's luma weights
    swift = (IOS / "PocketVitDemo/Preprocess.swift").read_text()
    kotlin = (ANDROID / "app/src/main/java/dev/pocketvit/Preprocess.kt").read_text()
    for token in ["32 - 8 - 2", "19595", "38470", "7471", "32768"]:
        assert token in swift and token in kotlin, token
