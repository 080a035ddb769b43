"""The whole pipeline on the tiny recipe: real teacher, cache, distillation, ExecuTorch export and runtime."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import ROOT, TINY, run_cli


def test_report_has_the_documented_keys(tiny_build):
    report = json.loads((tiny_build / "report.json").read_text())
    for key in ("recipe", "version", "dataset", "teacher", "student", "baseline", "targets", "exits", "stages"):
        assert key in report
    for key in ("arch", "params", "gflops", "test_top1"):
        assert key in report["teacher"] and key in report["student"]
    et = report["targets"]["executorch"]
    assert et["file"] == "model.pte" and et["runtime"] == "executorch"
    assert 0.0 <= et["test_top1"] <= 1.0
    assert et["parity"]["top1_agreement"] >= 0.99 and et["parity"]["cosine"] > 0.999
    assert et["latency_ms"]["median"] > 0
    assert report["teacher"]["gflops"] > report["student"]["gflops"]
    assert (tiny_build / "report.md").read_text().count("|") > 20
    assert (tiny_build / "plots" / "accuracy_vs_gflops.png").stat().st_size > 1000
    assert "<table>" in (tiny_build / "report.html").read_text()


def test_bundle_manifest_carries_the_contract(tiny_build):
    m = json.loads((tiny_build / "bundle" / "manifest.json").read_text())
    assert m["format_version"] == 1 and m["task"] == "classify" and len(m["labels"]) == 10
    assert m["input"]["color_order"] == "GRAY" and m["input"]["mean"] == [0.286]
    assert len(m["files"]["executorch"]["sha256"]) == 64
    assert (tiny_build / "bundle" / "README.md").read_text().startswith("# tiny")


def test_runtime_accuracy_is_measured_on_the_pte(tiny_build):
    """Re-run the bundle's .pte through pocketvit.runtime: the report's accuracy is reproducible."""
    from pocketvit.data import load_dataset
    from pocketvit.recipe import load_recipe
    from pocketvit.runtime import load

    splits = load_dataset(load_recipe(TINY).data, 0)
    p = load(tiny_build / "bundle", target="executorch")
    preds = [p.predict(img[0].numpy(), input_color="GRAY").label for img in splits.test.images]
    acc = float(np.mean([pr == splits.labels[y] for pr, y in zip(preds, splits.test.labels.tolist())]))
    report = json.loads((tiny_build / "report.json").read_text())
    assert acc == pytest.approx(report["targets"]["executorch"]["test_top1"], abs=1e-9)


def test_rerun_reuses_every_stage(tiny_copy):
    start = time.monotonic()
    r = run_cli("build", str(TINY), "--out", str(tiny_copy))
    assert r.returncode == 0, r.stderr
    stages = json.loads((tiny_copy / "report.json").read_text())["stages"]
    assert all(s["cached"] for s in stages.values()), stages
    assert time.monotonic() - start < 60


def test_changed_distill_setting_recomputes_only_what_depends_on_it(tiny_copy):
    r = run_cli("build", str(TINY), "--out", str(tiny_copy), "--set", "distill.lr=0.002")
    assert r.returncode == 0, r.stderr
    stages = json.loads((tiny_copy / "report.json").read_text())["stages"]
    assert stages["teacher"]["cached"] and stages["teacher_cache"]["cached"]
    assert not stages["distill"]["cached"] and not stages["baseline"]["cached"]
    assert not stages["export-executorch"]["cached"] and not stages["verify-executorch"]["cached"]


def test_interrupted_stage_resumes(tmp_path, fmnist_root):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "pocketvit.cli.main", "build", str(TINY), "--out", str(out),
            "--set", "distill.epochs=8", "--set", "distill.baseline=false"]
    env = {**os.environ, "POCKETVIT_QUIET": "0"}
    # A shell that starts jobs in the background (`cmd &`) hands them SIGINT ignored, and Python then never
    # raises KeyboardInterrupt: give the build the default disposition, as a terminal would.
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not list(out.glob("stages/distill-*/checkpoint.pt")):
        time.sleep(0.2)
    assert list(out.glob("stages/distill-*/checkpoint.pt")), "distill never saved a checkpoint"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "rerun the same command" in err
    assert not list(out.glob("stages/distill-*/done.json"))
    r = subprocess.run(args + ["--until", "distill"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "resuming after epoch" in r.stderr
    assert "teacher (cached" in r.stderr


def test_damaged_stage_output_is_refused(tiny_copy):
    weights = next(tiny_copy.glob("stages/distill-*/student.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    r = run_cli("build", str(TINY), "--out", str(tiny_copy))
    assert r.returncode != 0
    assert "student.safetensors is damaged" in r.stderr and "Traceback" not in r.stderr


def test_damaged_bundle_file_is_refused_by_predict(tiny_copy, tmp_path):
    from PIL import Image

    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(img)
    ok = run_cli("predict", str(tiny_copy / "bundle"), str(img))
    assert ok.returncode == 0, ok.stderr
    assert "executorch" in ok.stdout
    pte = tiny_copy / "bundle" / "model.pte"
    data = bytearray(pte.read_bytes())
    data[len(data) // 2] ^= 0x01
    pte.write_bytes(bytes(data))
    bad = run_cli("predict", str(tiny_copy / "bundle"), str(img))
    assert bad.returncode != 0
    assert "model.pte" in bad.stderr and "sha256" in bad.stderr and "Traceback" not in bad.stderr



def test_until_teacher_writes_this_builds_teacher(tiny_copy):
    """`--until teacher` leaves out/teacher.safetensors: the teacher of this config, also when the build folder
    holds teacher stages of other configs (what `make teacher-weights` copies)."""
    r = run_cli("build", str(TINY), "--out", str(tiny_copy), "--until", "teacher", "--set", "teacher.train.lr=0.004")
    assert r.returncode == 0, r.stderr
    assert f"teacher weights: {tiny_copy / 'teacher.safetensors'}" in r.stderr.replace("\n", "")
    stages = {json.loads((p / "done.json").read_text())["config"]["train"]["lr"]: p
              for p in tiny_copy.glob("stages/teacher-*")}
    assert len(stages) == 2  # the tiny build's own teacher and this one
    shipped = (tiny_copy / "teacher.safetensors").read_bytes()
    assert shipped == (stages[0.004] / "teacher.safetensors").read_bytes()
    assert shipped != (stages[next(k for k in stages if k != 0.004)] / "teacher.safetensors").read_bytes()
