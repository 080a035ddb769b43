"""`pocketvit bench-zoo` on one small timm model at a small size: every export, parity, isolated timing, the table."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli


@pytest.mark.slow
def test_bench_zoo_exports_checks_and_times_every_variant(tmp_path):
    out = tmp_path / "zoo"
    r = run_cli("bench-zoo", "-m", "convnext_atto", "--size", "64", "--runs", "5", "--no-int8",
                "--threads", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    z = json.loads((out / "zoo.json").read_text())
    assert z["meta"]["method"] == "isolated"
    row = z["models"][0]
    assert row["method"] == "isolated"
    v = row["variants"]
    assert set(v) == {"executorch-raw", "executorch", "litert-raw", "litert", "onnx", "eager"}
    for name in ("executorch-raw", "executorch", "litert-raw", "litert", "onnx"):
        assert v[name]["status"] == "ok" and v[name]["parity"]["max_abs_diff"] < 1e-4
        assert v[name]["latency"]["runs"] == 5 and v[name]["latency"]["median_ms"] > 0
    assert v["onnx"]["latency"]["vs_onnx"] == 1.0
    assert v["executorch"]["delegate_calls"] == 1 and v["executorch"]["nodes_outside"] == 0
    assert "own process" in (out / "zoo.md").read_text() and "| convnext_atto |" in r.stdout
    assert (out / "zoo.png").read_bytes()[:4] == b"\x89PNG"
