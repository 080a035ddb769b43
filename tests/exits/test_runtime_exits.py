"""The exit program on real runtimes: pocketvit.runtime's exit decisions and outputs match the eager
exit model; thresholds 0 / above 1 send every image out at the first exit / through the full model."""

from __future__ import annotations

import numpy as np
import pytest
from pocketvit.exits.calibrate import NEVER, exit_points, softmax_np

from .conftest import eager_logits, make_bundle, sample_images

TARGETS = [pytest.param("onnx"), pytest.param("executorch", marks=pytest.mark.slow),
           pytest.param("litert", marks=pytest.mark.slow)]


def _run(bundle, target, images, use_exits=True):
    from pocketvit.runtime import load

    with load(bundle, target=target, use_exits=use_exits, num_threads=1) as p:
        preds = [p.predict(im, input_color="GRAY", topk=1) for im in images]
        return p, preds


@pytest.mark.parametrize("target", TARGETS)
def test_runtime_exit_decisions_match_eager(tiny_exit_model, tmp_path, target):
    images = sample_images()
    eager = eager_logits(tiny_exit_model, images)
    conf = softmax_np(eager)[:-1].max(-1)
    thresholds = [float(np.median(conf[0])), float(np.median(conf[1]))]  # some images leave, some go on
    bundle = make_bundle(tiny_exit_model, target, tmp_path, thresholds)
    p, preds = _run(bundle, target, images)
    names = [e["name"] for e in p.exits]
    assert names == ["exit1", "exit2", "final"] and [e["threshold"] for e in p.exits[:2]] == thresholds
    taken = np.array([names.index(r.exit) if r.exit else 2 for r in preds])
    expected = exit_points(conf, thresholds)
    assert (taken == expected).all(), (taken, expected)
    assert len(set(taken.tolist())) >= 2  # the case really mixes exits
    got = np.stack([r.scores for r in preds])
    want = softmax_np(eager)[expected, np.arange(len(images))]
    np.testing.assert_allclose(got, want, atol=1e-4)

    # thresholds 0: every image leaves at the first exit; above 1: every image runs the full model
    for th, where in ((0.0, "exit1"), (NEVER, None)):
        b = make_bundle(tiny_exit_model, target, tmp_path / f"th{th}", [th, th])
        _, preds = _run(b, target, images)
        assert all(r.exit == where for r in preds)
        if where is None:
            full = softmax_np(eager[-1])
            np.testing.assert_allclose(np.stack([r.scores for r in preds]), full, atol=1e-4)

    # --no-exits: the unsegmented model file, the same answers as the full chain
    p, preds = _run(bundle, target, images, use_exits=False)
    assert not p.exits and all(r.exit is None for r in preds)
    np.testing.assert_allclose(np.stack([r.scores for r in preds]), softmax_np(eager[-1]), atol=1e-4)


def test_manifest_lists_segments_and_exits_and_checks_them(tiny_exit_model, tmp_path):
    import json

    from pocketvit.errors import BundleError
    from pocketvit.runtime import Bundle

    bundle = make_bundle(tiny_exit_model, "onnx", tmp_path, [0.5, 0.6])
    m = json.loads((bundle / "manifest.json").read_text())
    assert [s["method"] for s in m["files"]["onnx"]["segments"]] == ["seg0", "seg1", "seg2"]
    assert [e["threshold"] for e in m["exits"]] == [0.5, 0.6, None]
    assert m["source"]["exits"]["after_blocks"] == [1, 2]
    seg = bundle / m["files"]["onnx"]["segments"][1]["path"]
    seg.write_bytes(seg.read_bytes()[:-1] + b"\0")
    with pytest.raises(BundleError, match="sha256 mismatch"):
        Bundle.open(bundle, verify=True)


def test_verify_cli_compares_the_exit_chain(tiny_exit_model, tmp_path):
    from tests.conftest import run_cli

    bundle = make_bundle(tiny_exit_model, "onnx", tmp_path, [0.3, 0.3])
    r = run_cli("verify", str(bundle), "--json")
    assert r.returncode == 0, r.stderr
    import json

    rows = json.loads(r.stdout)["targets"]
    assert rows["onnx exits"]["status"] == "pass" and "exit decisions agree" in rows["onnx exits"]["note"]
    r = run_cli("verify", str(bundle), "--json", "--no-exits")
    assert "onnx exits" not in json.loads(r.stdout)["targets"]


@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnx", "executorch", "litert"])
def test_vit_exit_program_on_the_runtimes(vit_exit_model, tmp_path, target):
    """A plain ViT/DeiT-style student: the same chain, decisions and outputs as eager."""
    images = sample_images(12)
    eager = eager_logits(vit_exit_model, images)
    conf = softmax_np(eager)[:-1].max(-1)
    thresholds = [float(np.median(conf[0])), float(np.median(conf[1]))]
    bundle = make_bundle(vit_exit_model, target, tmp_path, thresholds)
    p, preds = _run(bundle, target, images)
    names = [e["name"] for e in p.exits]
    taken = np.array([names.index(r.exit) if r.exit else 2 for r in preds])
    expected = exit_points(conf, thresholds)
    assert (taken == expected).all()
    np.testing.assert_allclose(np.stack([r.scores for r in preds]),
                               softmax_np(eager)[expected, np.arange(len(images))], atol=1e-4)


def test_exit_chain_bench_times_the_raw_executorch_chain(tiny_exit_model, tmp_path):
    """python -m benchmarks.exit_chain: unsegmented program vs every segment method, no pocketvit.runtime."""
    from pocketvit.errors import BundleError

    from benchmarks.exit_chain import measure

    bundle = make_bundle(tiny_exit_model, "executorch", tmp_path, [0.5, 0.5])
    r = measure(bundle, runs=5)
    assert r["segments"] == 3 and r["unsegmented_ms"] > 0 and r["chain_ms"] > 0
    onnx = make_bundle(tiny_exit_model, "onnx", tmp_path / "onnx", [0.5, 0.5])
    with pytest.raises(BundleError, match="not an ExecuTorch program"):
        measure(onnx, target="onnx", runs=5)
