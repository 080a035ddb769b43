"""pocketvit.bench in-process: tolerances, the interleaving, Core ML rows, bundles without a source block."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pocketvit.bench._common import COREML_NOTE, precision_class
from pocketvit.bench.latency import bench_bundle, interleaved, machine_peak_gflops
from pocketvit.bench.measure import CONSTANT_OUTPUT, parity
from pocketvit.bench.parity import TargetParity, check, raise_on_failure, tolerances, verify_bundle
from pocketvit.errors import BundleError, NotRunError, VerifyError

from tests.bench.testkit import all_targets_build, copy_bundle


@pytest.fixture(scope="session")
def tiny_all(tiny_build, tmp_path_factory):
    return all_targets_build(tiny_build, tmp_path_factory)


def _row(target, precision, mad, cos, top1):
    return TargetParity(target, target.split("-")[0], precision, "not run", mad, cos, top1)


def test_tolerance_per_precision_and_overrides():
    tols = tolerances()
    fp32, int8 = tols["fp32"], tols["int8"]
    assert (fp32.max_abs_diff, fp32.cosine, fp32.top1) == (1e-3, 0.999, 0.99)
    assert (int8.max_abs_diff, int8.cosine, int8.top1) == (None, 0.98, 0.9)
    r = _row("onnx-int8", "int8", 0.5, 0.985, 0.92)  # large |Δ| is fine for int8, not for fp32
    check(r, int8)
    assert r.status == "pass"
    r = _row("onnx", "fp32", 0.5, 0.985, 0.92)
    check(r, fp32)
    assert r.status == "fail" and len(r.failures) == 3 and r.failures[0].startswith("max abs diff 0.5")
    assert tolerances({"int8": {"cosine": 0.99, "top1": None}})["int8"].cosine == 0.99
    assert tolerances({"int8": {"cosine": 0.99, "top1": None}})["int8"].top1 == 0.9
    assert precision_class("litert-int8", {"precision": "int8"}) == "int8"
    assert precision_class("onnx-int8", {}) == "int8"
    assert precision_class("coreml", {"precision": "fp16"}) == "fp16"
    assert precision_class("onnx", {"precision": "fp32"}) == "fp32"


def test_a_file_that_ignores_its_input_fails_whatever_its_figures():
    """Two int8 files of the zoo gave all zeros (cosine 0) and passed as merely inaccurate; a constant output
    close to eager's average can even meet the int8 cosine and top-1 tolerances. Both fail, named."""
    from pocketvit.bench.parity import fill

    rng = np.random.default_rng(0)
    eager = np.tile(rng.normal(0, 3, 10), (8, 1)) + rng.normal(0, 0.05, (8, 10))  # one strong class, small spread
    near = np.tile(eager.mean(0), (8, 1)).astype(np.float32)
    r = _row("executorch-int8", "int8", None, None, None)
    fill(r, near, eager, tolerances()["int8"])
    assert r.cosine > 0.99 and r.top1_agreement == 1.0  # the tolerances alone would pass it
    assert r.status == "fail" and r.failures == [f"{CONSTANT_OUTPUT} (all 8 inputs give the same output)"]
    r = _row("litert-int8", "int8", None, None, None)
    fill(r, np.zeros((8, 10), np.float32), eager, tolerances()["int8"])
    assert r.status == "fail" and r.failures[0] == f"{CONSTANT_OUTPUT} (every value is 0)"
    assert r.constant_output == r.failures[0]
    one = parity(np.zeros((1, 10), np.float32), eager[:1])  # one input: all zeros is still broken
    assert one["constant_output"].endswith("(every value is 0)")
    for out, ref in ((eager.astype(np.float32), eager), (near, near.astype(np.float64)), (near[:1], eager[:1])):
        assert "constant_output" not in parity(out, ref)  # varies, or eager is constant too, or one non-zero row


def test_probabilities_are_compared_as_log_probabilities():
    """A drop-in file outputs a softmax: an error of 0.024 in 1,000 logits (GhostNetV2's LiteRT file before
    nearest-resize-as-gather) is ~2e-5 in probability, under the fp32 tolerance; as log-probabilities it is the
    logits' own 0.024 and fails. Classes under the 1e-4 floor (underflowed, or a float16 file's imprecise tail)
    compare equal, not as nan or as an error."""
    from pocketvit.bench.measure import parity

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 0.5, (4, 1000))
    off = logits + rng.uniform(-0.024, 0.024, logits.shape)
    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    as_probs = parity(softmax(off).astype(np.float32), softmax(logits))
    assert as_probs["max_abs_diff"] < 1e-4  # what the old check saw: a pass
    figures = parity(softmax(off).astype(np.float32), softmax(logits), "probabilities")
    assert 0.02 < figures["max_abs_diff"] < 0.05 and figures["top1_agreement"] >= 0.75
    r = _row("litert-dropin", "fp32", figures["max_abs_diff"], figures["cosine"], 1.0)
    check(r, tolerances()["fp32"])
    assert r.status == "fail" and r.failures[0].startswith("max abs diff 0.0")
    same = softmax(logits).astype(np.float32)
    same[0, :3] = 0.0  # underflowed in the file and in eager
    eager, fp16 = same.astype(np.float64), same.copy()
    eager[1, :3], fp16[1, :3] = [2e-7, 3e-6, 5e-9], [0.0, 2e-6, 6e-8]  # a float16 file's tiny classes, below the floor
    assert parity(fp16, eager, "probabilities")["max_abs_diff"] == 0.0
    exact = parity(same, same.astype(np.float64), "probabilities")
    assert exact["max_abs_diff"] == 0.0 and np.isfinite(exact["cosine"])


def test_nan_output_fails():
    r = _row("onnx", "fp32", float("nan"), float("nan"), 1.0)
    check(r, tolerances()["fp32"])
    assert r.status == "fail"


def test_failure_message_names_the_target_and_figure():
    result = {"bundle": "b", "inputs": 8, "targets": {
        "onnx": {"target": "onnx", "runtime": "onnx", "precision": "fp32", "status": "pass", "failures": [], "note": None},
        "litert-int8": {"target": "litert-int8", "runtime": "litert", "precision": "int8", "status": "fail",
                        "failures": ["cosine 0.900000 < 0.98"], "note": None}}}
    with pytest.raises(VerifyError) as e:
        raise_on_failure(result)
    assert "litert-int8 (litert, int8): cosine 0.900000 < 0.98" in str(e.value)
    assert "onnx (" not in str(e.value) and e.value.exit_code == 6


def test_interleaved_calls_each_runner_once_per_round_in_varying_order():
    calls = []
    runners = {n: (lambda n=n: calls.append(n)) for n in "abcd"}
    times = interleaved(runners, runs=20, warmup=1)
    assert calls[:4] == ["a", "b", "c", "d"]  # warm-up
    rounds = [calls[i : i + 4] for i in range(4, len(calls), 4)]
    assert len(rounds) == 20 and all(sorted(r) == ["a", "b", "c", "d"] for r in rounds)
    assert len({tuple(r) for r in rounds}) > 5  # the order changes
    before_a = {calls[i - 1] for i in range(5, len(calls)) if calls[i] == "a"}
    assert len(before_a) > 1  # "a" does not always follow the same runner
    assert all(len(v) == 20 and min(v) >= 0 for v in times.values())


def test_machine_peak_is_positive():
    p = machine_peak_gflops(1, n=256, repeats=2, warmup=1)
    assert p["gflops_per_s"] > 0 and "256x256" in p["method"]


def _add_fake_coreml(bundle):
    from pocketvit.runtime import file_entry, write_manifest

    pkg = bundle / "model.mlpackage"
    (pkg / "Data").mkdir(parents=True)
    (pkg / "Data" / "model.mlmodel").write_bytes(b"not executed here")
    m = json.loads((bundle / "manifest.json").read_text())
    m["files"]["coreml"] = file_entry(bundle, "coreml", "model.mlpackage", "coreml", "fp16")
    write_manifest(bundle, m)


@pytest.mark.skipif(__import__("sys").platform == "darwin", reason="Core ML executes on macOS")
def test_coreml_is_reported_converted_never_a_number(tiny_all, tmp_path):
    bundle = copy_bundle(tiny_all, tmp_path / "bundle")
    _add_fake_coreml(bundle)
    res = verify_bundle(bundle, n_inputs=4)
    row = res["targets"]["coreml"]
    assert row["status"] == "not run" and row["note"] == COREML_NOTE
    assert row["max_abs_diff"] is None and row["cosine"] is None and row["top1_agreement"] is None
    assert res["passed"] and res["targets"]["onnx"]["status"] == "pass"
    raise_on_failure(res)
    only = verify_bundle(bundle, targets=["coreml"], n_inputs=2)
    with pytest.raises(NotRunError, match="nothing was verified"):  # a Core ML-only bundle off macOS checks nothing
        raise_on_failure(only)
    raise_on_failure(only, allow_unrun=True)  # unless the user accepts that


def test_a_file_its_runtime_cannot_load_fails_alone(tiny_all, tmp_path):
    """A checksummed file the runtime refuses (here a truncated .pte; in the zoo an int8 TinyViT whose XNNPACK pad
    node does not compile) is that target's failure: the other targets are still checked, and verify exits 6."""
    from tests.bench.testkit import update_entry

    bundle = copy_bundle(tiny_all, tmp_path / "b")
    pte = bundle / json.loads((bundle / "manifest.json").read_text())["files"]["executorch"]["path"]
    pte.write_bytes(pte.read_bytes()[: pte.stat().st_size // 2])
    update_entry(bundle, "executorch")
    result = verify_bundle(bundle, n_inputs=4)
    et = result["targets"]["executorch"]
    assert et["status"] == "fail" and et["failures"][0].startswith("does not run on executorch: ") and et["run_error"]
    assert et["max_abs_diff"] is None and not result["passed"]
    assert {t: r["status"] for t, r in result["targets"].items() if t != "executorch"} == {
        "onnx": "pass", "litert": "pass", "litert-dropin": "pass"}
    with pytest.raises(VerifyError, match="executorch \\(executorch, fp32\\): does not run on executorch"):
        raise_on_failure(result)


def test_bench_without_source_block_skips_eager(tiny_all, tmp_path):
    bundle = copy_bundle(tiny_all, tmp_path / "bundle")
    m = json.loads((bundle / "manifest.json").read_text())
    del m["source"]
    (bundle / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="no 'source' block"):
        verify_bundle(bundle, n_inputs=2)
    res = bench_bundle(bundle, targets=["onnx"], runs=50, warmup=1, threads=1, peak_repeats=1)
    assert set(res["results"]) == {"onnx"} and res["model"]["gflops"] is None
    assert res["results"]["onnx"]["median_ms"] > 0 and "fraction_of_peak" not in res["results"]["onnx"]
    assert any("eager torch not run" in n for n in res["notes"])


def test_unknown_target_is_named(tiny_all):
    with pytest.raises(BundleError, match="no target 'tensorrt'.*executorch"):
        verify_bundle(tiny_all / "bundle", targets=["tensorrt"], n_inputs=2)


def test_bench_plot_from_a_result(tmp_path):
    from pocketvit.bench.plot import bench_plot

    res = {"name": "m", "threads": 2, "runs": 50, "model": {"gflops": 1.2},
           "machine": {"peak": {"gflops_per_s": 300.0}},
           "results": {"eager": {"runtime": "torch", "median_ms": 30.0, "p90_ms": 35.0, "ratio_to_onnx": 3.0},
                       "onnx": {"runtime": "onnx", "median_ms": 10.0, "p90_ms": 11.0, "ratio_to_onnx": 1.0},
                       "coreml": {"runtime": "coreml", "note": COREML_NOTE}}}
    out = bench_plot(res, tmp_path / "p" / "bench.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert np.isfinite(res["results"]["onnx"]["median_ms"])


def test_reference_weights_that_do_not_fit_are_a_bundle_error(tiny_all, tmp_path):
    from safetensors.numpy import save_file

    bundle = copy_bundle(tiny_all, tmp_path / "bundle")
    save_file({"not.a.weight": np.zeros(3, np.float32)}, str(bundle / "reference" / "weights.safetensors"))
    with pytest.raises(BundleError, match="do not fit the 'pocketvit-tinyvit' model"):
        verify_bundle(bundle, n_inputs=2)
    res = bench_bundle(bundle, targets=["litert"], runs=50, warmup=1, threads=1, peak_repeats=1)
    assert "eager" not in res["results"] and res["results"]["litert"]["median_ms"] > 0
    assert any("do not fit" in n for n in res["notes"])
