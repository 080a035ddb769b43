"""Nothing unverified ships: a file damaged between its export stage and its verify stage fails the build with
`pocketvit verify`'s exit code and message shape, leaves no bundle (verify.on_mismatch: fail, the default), is left
out of the bundle (drop) or ships marked as failed (keep); the policy reruns no stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY, run_cli


def _build(out: Path, *sets: str, until: str | None = None) -> dict:
    from pocketvit.pipeline.classify import run_build
    from pocketvit.recipe import load_recipe

    return run_build(load_recipe(TINY, list(sets)), TINY, out, until=until)


def _damage_onnx_export(out: Path) -> str:
    """Perturb the weights of the finished export-onnx stage's model.onnx and record its new sha256 in the stage's
    done.json, as if the export itself had written a wrong file: the runner trusts it, only verify can tell."""
    import numpy as np
    import onnx
    from onnx import numpy_helper
    from pocketvit.runtime import sha256_file

    (stage,) = (out / "stages").glob("export-onnx-*")
    path = stage / "model.onnx"
    model = onnx.load(str(path))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32 and w.size >= 16:
            init.CopyFrom(numpy_helper.from_array(w + rng.standard_normal(w.shape).astype(np.float32) * 0.5, init.name))
    onnx.save(model, str(path))
    done = json.loads((stage / "done.json").read_text())
    done["outputs"]["model.onnx"] = sha256_file(path)
    (stage / "done.json").write_text(json.dumps(done))
    return stage.name


@pytest.fixture(scope="module")
def damaged(tiny_build, tmp_path_factory) -> Path:
    """The tiny build with an onnx target whose export stage holds a damaged file (built up to `--until export`)."""
    import shutil

    out = tmp_path_factory.mktemp("damaged") / "build"
    shutil.copytree(tiny_build, out)
    report = _build(out, "export.targets=[executorch, onnx]", until="export")
    assert "verify-onnx" not in report["stages"] and report["exported"] == ["executorch", "onnx"]
    _damage_onnx_export(out)
    return out


def test_a_damaged_target_fails_the_build_like_verify_and_leaves_no_bundle(damaged, tmp_path):
    import shutil

    out = tmp_path / "build"
    shutil.copytree(damaged, out)
    assert (out / "bundle" / "manifest.json").is_file()  # the earlier build's bundle (executorch only)
    r = run_cli("build", str(TINY), "--out", str(out), "--set", "export.targets=[executorch, onnx]")
    assert r.returncode == 6, r.stderr
    err = r.stderr
    assert "Traceback" not in err
    assert "error:" in err and "onnx (onnx, fp32): max abs diff" in err and "> 0.001" in err
    assert "verify.on_mismatch" in err
    assert not (out / "bundle").exists()  # nothing that claims the target passed, not even the old bundle
    report = json.loads((out / "report.json").read_text())
    assert report["verify"]["passed"] is False and report["verify"]["bundle"] is None
    assert report["targets"]["onnx"]["verify"]["status"] == "fail"
    assert report["targets"]["executorch"]["verify"]["status"] == "pass"
    assert "Verification failed: no bundle was written" in (out / "report.md").read_text()


def test_drop_leaves_the_target_out_and_says_so(damaged, tmp_path):
    import shutil

    out = tmp_path / "build"
    shutil.copytree(damaged, out)
    report = _build(out, "export.targets=[executorch, onnx]", "verify.on_mismatch=drop")
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert list(manifest["files"]) == ["executorch"] and "onnx" not in manifest["metrics"]
    assert report["verify"]["dropped"] == ["onnx"]
    assert report["targets"]["onnx"]["verify"]["action"] == "dropped from the bundle"
    md = (out / "report.md").read_text()
    assert "FAIL, dropped" in md and "onnx: verify failed — max abs diff" in md
    assert not list((out / "bundle").glob("*.onnx"))


def test_keep_ships_the_target_marked_in_manifest_report_and_card(damaged, tmp_path):
    import shutil

    out = tmp_path / "build"
    shutil.copytree(damaged, out)
    report = _build(out, "export.targets=[executorch, onnx]", "verify.on_mismatch=keep")
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert set(manifest["files"]) == {"executorch", "onnx"}
    assert manifest["unverified"] == ["onnx"]
    assert manifest["metrics"]["onnx"]["verify"]["status"] == "fail"
    assert manifest["metrics"]["executorch"]["verify"]["status"] == "pass"
    assert report["verify"]["kept"] == ["onnx"]
    card = (out / "bundle" / "README.md").read_text()
    assert "FAIL, kept" in card and "onnx: verify failed" in card
    # the policy is in no stage hash: switching it reruns nothing, and the next bundle follows it
    again = _build(out, "export.targets=[executorch, onnx]", "verify.on_mismatch=drop")
    assert all(s["cached"] for s in again["stages"].values()), again["stages"]
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert list(manifest["files"]) == ["executorch"] and "unverified" not in manifest


def test_on_mismatch_is_not_in_the_verify_stage_hash():
    from pocketvit.pipeline.stages.targets import verify_config
    from pocketvit.recipe import load_recipe
    from pocketvit.recipe.schema import stable_dump

    default = load_recipe(TINY).verify
    assert "on_mismatch" not in stable_dump(default)  # an added field at its default stays out of every hash
    assert verify_config(default) == default.model_dump(exclude={"on_mismatch"})
    for policy in ("keep", "drop"):
        assert verify_config(load_recipe(TINY, [f"verify.on_mismatch={policy}"]).verify) == verify_config(default)


def test_verify_exits_8_when_nothing_could_run(tiny_build, tmp_path):
    """A bundle whose only target is Core ML (conversion checked, never run on Linux): verify and bench pass on
    nothing only with --allow-unrun."""
    import shutil

    from pocketvit.runtime import sha256_file

    b = tmp_path / "bundle"
    shutil.copytree(tiny_build / "bundle", b)
    pkg = b / "model.mlpackage"
    pkg.mkdir()
    (pkg / "Manifest.json").write_text("{}")
    m = json.loads((b / "manifest.json").read_text())
    m["files"] = {"coreml": {"path": "model.mlpackage", "sha256": sha256_file(pkg), "bytes": 2, "runtime": "coreml",
                             "precision": "fp16"}}
    m["metrics"] = {}
    (b / "manifest.json").write_text(json.dumps(m))
    r = run_cli("verify", str(b))
    assert r.returncode == 8, r.stderr
    assert "nothing was verified" in r.stderr and "coreml: converted; execution needs macOS" in r.stderr
    assert "--allow-unrun" in r.stderr and "Traceback" not in r.stderr
    ok = run_cli("verify", str(b), "--allow-unrun")
    assert ok.returncode == 0, ok.stderr
    bench = run_cli("bench", str(b), "--runs", "50")
    assert bench.returncode == 8 and "nothing was timed" in bench.stderr, bench.stderr
