"""`pocketvit export --quantize`: refused clearly, before any export, when it cannot be done."""

from __future__ import annotations

from tests.conftest import run_cli


def _said(r) -> str:
    return " ".join(r.stderr.split())  # rich wraps long messages


def test_only_int8_is_offered(tmp_path):
    r = run_cli("export", "timm:resnet10t", "--target", "onnx", "--input-size", "32", "32", "--quantize", "int4",
                "--out", str(tmp_path / "b"))
    assert r.returncode == 4 and "only int8" in _said(r) and "Traceback" not in r.stderr
    assert not (tmp_path / "b").exists()


def test_int8_needs_training_images_for_calibration(tmp_path):
    r = run_cli("export", "timm:resnet10t", "--target", "onnx", "--input-size", "32", "32", "--quantize", "int8",
                "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "--calibration DIR" in _said(r) and "never test" in _said(r)
    assert not (tmp_path / "b").exists()
    r = run_cli("export", "timm:resnet10t", "--target", "onnx", "--input-size", "32", "32", "--quantize", "int8",
                "--calibration", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "not a folder" in _said(r)


def test_palettize_takes_4_6_or_8_bits(tmp_path):
    r = run_cli("export", "timm:resnet10t", "--target", "coreml", "--quantize", "int8", "--palettize", "5",
                "--out", str(tmp_path / "b"))
    assert r.returncode == 4 and "use 4, 6 or 8 bits" in _said(r) and "Traceback" not in r.stderr
    assert not (tmp_path / "b").exists()
