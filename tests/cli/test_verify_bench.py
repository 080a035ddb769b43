"""`pocketvit verify`, `bench` and `inspect` on a real tiny bundle (executorch, onnx, litert), as a user runs them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.bench.testkit import ALL_TARGETS, all_targets_build, copy_bundle, perturb_onnx_weights
from tests.conftest import run_cli


def _flat(text: str) -> str:
    """stderr with rich's line wrapping undone."""
    return " ".join(text.split())


@pytest.fixture(scope="session")
def tiny_all(tiny_build, tmp_path_factory):
    return all_targets_build(tiny_build, tmp_path_factory)


def test_verify_passes_on_the_tiny_bundle(tiny_all):
    r = run_cli("verify", str(tiny_all / "bundle"), "--inputs", "16", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["passed"] and out["inputs"] == 16
    assert set(out["targets"]) == set(ALL_TARGETS)
    for t in out["targets"].values():
        assert t["status"] == "pass", t
        assert t["max_abs_diff"] < 1e-3 and t["cosine"] > 0.999 and t["top1_agreement"] == 1.0


def test_verify_fails_on_a_genuinely_different_model(tiny_all, tmp_path):
    bundle = copy_bundle(tiny_all, tmp_path / "bundle")
    perturb_onnx_weights(bundle)  # different weights, sha256 updated: the checksum check passes
    r = run_cli("verify", str(bundle), "--inputs", "16")
    assert r.returncode == 6, (r.returncode, r.stderr[-3000:])
    err = _flat(r.stderr)
    assert "onnx (onnx, fp32): max abs diff" in err and "cosine" in err and "Traceback" not in err
    assert "sha256" not in err  # a parity failure, not a checksum error
    assert "FAIL" in r.stdout and "pass" in r.stdout  # the table shows the other targets passing


def test_verify_refuses_a_damaged_file_before_running_it(tiny_all, tmp_path):
    bundle = copy_bundle(tiny_all, tmp_path / "bundle")
    f = bundle / "model.tflite"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    r = run_cli("verify", str(bundle), "--target", "onnx")  # every file is checked, not only the target's
    assert r.returncode == 3, r.stderr[-3000:]
    assert "model.tflite" in r.stderr and "sha256 mismatch" in _flat(r.stderr)


def test_bench_json_has_every_runtime_and_the_peak(tiny_all, tmp_path):
    png = tmp_path / "bench.png"
    r = run_cli("bench", str(tiny_all / "bundle"), "--json", "--runs", "50", "--warmup", "2", "--threads", "1",
                "--plot", str(png))
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["threads"] == 1 and out["runs"] == 50 and out["batch"] == 1
    assert out["machine"]["peak"]["gflops_per_s"] > 0
    assert out["model"]["gflops"] > 0
    assert set(out["results"]) == {"eager", *ALL_TARGETS}
    for e in out["results"].values():
        assert e["median_ms"] > 0 and e["p90_ms"] >= e["median_ms"] and e["runs"] == 50
        assert e["fraction_of_peak"] > 0 and e["ratio_to_onnx"] > 0
    assert out["reference"] == "onnx" and out["results"]["onnx"]["ratio_to_onnx"] == 1.0
    assert set(out["wrapper_overhead"]["targets"]) == set(ALL_TARGETS)
    for w in out["wrapper_overhead"]["targets"].values():
        assert w["predict_median_ms"] > 0 and w["run_median_ms"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "latency per runtime" in r.stderr  # tables go to stderr with --json


def test_bench_isolated_times_every_runner_and_the_wrapper(tiny_all):
    r = run_cli("bench", str(tiny_all / "bundle"), "--json", "--runs", "50", "--warmup", "2", "--threads", "1",
                "--target", "onnx", "--method", "isolated")
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["method"] == "isolated" and "own process" in out["method_text"]
    assert set(out["results"]) == {"eager", "onnx"}
    assert all(e["runs"] == 50 and e["median_ms"] > 0 for e in out["results"].values())
    w = out["wrapper_overhead"]["targets"]["onnx"]
    assert w["predict_median_ms"] >= w["overhead_ms"] and w["run_median_ms"] > 0


def test_bench_refuses_an_unknown_method(tiny_all):
    r = run_cli("bench", str(tiny_all / "bundle"), "--method", "fastest")
    assert r.returncode == 2 and "--method" in r.stderr and "isolated" in r.stderr


def test_inspect_prints_the_card_targets_and_contract(tiny_all):
    bundle = tiny_all / "bundle"
    r = run_cli("inspect", str(bundle))
    assert r.returncode == 0, r.stderr[-3000:]
    card = (bundle / "README.md").read_text()
    assert card.splitlines()[0] in r.stdout  # the model card, as written
    manifest = json.loads((bundle / "manifest.json").read_text())
    for t in ALL_TARGETS:
        assert t in r.stdout and manifest["files"][t]["sha256"][:12] in r.stdout
    assert "input contract" in r.stdout and "color_order" in r.stdout and "early exits: none" in r.stdout
    assert "metrics recorded at build time" in r.stdout
    j = run_cli("inspect", str(bundle), "--json")
    s = json.loads(j.stdout)
    assert s["card"] == card and s["input"] == manifest["input"] and set(s["targets"]) == set(ALL_TARGETS)


def test_inspect_names_a_missing_bundle(tmp_path):
    r = run_cli("inspect", str(tmp_path / "nope"))
    assert r.returncode == 3 and "no such bundle" in _flat(r.stderr) and "Traceback" not in r.stderr


def test_predict_json_is_quiet_on_every_target(tiny_all, tmp_path):
    """No toolchain chatter (ExecuTorch's cpuinfo lines, LiteRT's delegate line, torch's deprecation log) on the
    terminal: one JSON line per image on stdout, nothing on stderr; --verbose lets the runtimes talk."""
    from PIL import Image

    images = []
    for i in range(2):
        images.append(tmp_path / f"{i}.png")
        Image.fromarray((np.arange(28 * 28).reshape(28, 28) * (i + 1) % 256).astype(np.uint8)).save(images[-1])
    for target in ALL_TARGETS:
        r = run_cli("predict", str(tiny_all / "bundle"), *map(str, images), "--json", "--target", target,
                    env={"POCKETVIT_QUIET": "0"})
        assert r.returncode == 0, r.stderr[-2000:]
        lines = r.stdout.splitlines()
        assert [json.loads(line)["image"] for line in lines] == list(map(str, images)), (target, r.stdout)
        assert r.stderr == "", (target, r.stderr)
    loud = run_cli("predict", str(tiny_all / "bundle"), str(images[0]), "--json", "--target", "litert", "--verbose")
    assert "XNNPACK delegate" in loud.stderr and len(loud.stdout.splitlines()) == 1


def test_verify_records_how_each_target_ran(tiny_all):
    r = run_cli("verify", str(tiny_all / "bundle"), "--inputs", "4", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(r.stdout)["targets"]
    assert rows["onnx"]["runtime_info"]["providers"] == ["CPUExecutionProvider"]
    assert rows["litert"]["runtime_info"]["delegates"] == ["XNNPACK"]
    assert "threadpool" in rows["executorch"]["runtime_info"]
    assert all(row["runtime_info"]["fallbacks"] == [] for row in rows.values())
    report = json.loads((tiny_all / "report.json").read_text())
    lat = report["targets"]["onnx"]["latency_ms"]  # the build times as `pocketvit bench` does, and says how
    assert lat["method"] == "interleaved" and lat["threads"] == 1 and lat["runs"] == 5
