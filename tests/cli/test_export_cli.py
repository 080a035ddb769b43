"""`pocketvit export` as a user runs it: timm models, a build directory, clean errors."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

pytest.importorskip("torch")
pytest.importorskip("timm")


def _flat(text: str) -> str:
    return " ".join(text.split())


def invoke(*args: str):
    """The same CLI in this process (saves the interpreter + torch start-up of a subprocess)."""
    from pocketvit.cli.main import app
    from typer.testing import CliRunner

    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def resnet_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "resnet10t"
    r = invoke("export", "timm:resnet10t", "--target", "onnx", "--target", "executorch", "--input-size", "64", "64",
               "--out", str(out), "--json")
    assert r.exit_code == 0, r.stderr[-4000:]
    return out, json.loads(r.stdout)


def test_timm_model_to_two_targets_in_one_bundle(resnet_bundle):
    import numpy as np
    from pocketvit.runtime import Bundle, load

    out, result = resnet_bundle
    m = json.loads((out / "manifest.json").read_text())
    assert set(m["files"]) == {"onnx", "executorch"} and m["task"] == "classify"
    assert m["input"]["height"] == 64 and m["input"]["resize"] == 73 and m["input"]["color_order"] == "RGB"
    assert m["labels"][967] == "espresso"
    assert m["source"]["arch"] == "timm:resnet10t" and (out / m["source"]["weights"]).is_file()
    assert m["provenance"]["random_init"] is True
    Bundle.open(out, verify=True)  # every sha256 matches

    image = np.random.default_rng(0).integers(0, 256, (80, 96, 3), dtype=np.uint8)
    labels = set()
    for target in ("onnx", "executorch"):
        with load(out, target=target) as p:
            r = p.predict(image)
            assert r.label in m["labels"] and 0 < r.score <= 1
            labels.add(r.label)
        t = result["targets"][target]
        assert t["status"] == "ok" and t["parity"]["inputs"] == 16
        assert t["parity"]["max_abs_diff"] < 1e-3 and t["parity"]["top1_agreement"] == 1.0
        assert t["latency_ms"]["median"] > 0
        assert m["metrics"][target]["parity"]["cosine"] > 0.999
    assert len(labels) == 1  # both runtimes agree
    ex = result["targets"]["executorch"]["backend"]
    assert ex["delegate_calls"] >= 1 and "delegate call" in result["targets"]["executorch"]["summary"]
    facts = m["metrics"]["executorch"]["backend"]  # the same facts in the manifest
    assert facts["delegate_calls"] == ex["delegate_calls"] and facts["summary"] == result["targets"]["executorch"]["summary"]
    assert result["targets"]["onnx"]["backend"]["opset"] >= 13

    card = (out / "README.md").read_text()
    assert "## Measured right after export" in card and "| onnx | `model.onnx`" in card
    assert "| executorch | `model.pte`" in card and "random initialisation" in card and "Apache-2.0" in card
    row = next(line for line in card.splitlines() if line.startswith("| onnx |"))
    assert f"{result['targets']['onnx']['parity']['max_abs_diff']:.2e}" in row


def test_build_directory_as_model(tiny_build, tmp_path):
    from pocketvit.runtime import load

    out = tmp_path / "student"
    r = invoke("export", str(tiny_build), "--target", "onnx", "--out", str(out))
    assert r.exit_code == 0, r.stderr[-4000:]
    built = json.loads((tiny_build / "bundle" / "manifest.json").read_text())
    m = json.loads((out / "manifest.json").read_text())
    assert m["name"] == built["name"] and m["labels"] == built["labels"] and m["input"] == built["input"]
    assert {k: v for k, v in m["source"].items()} == built["source"]
    assert m["provenance"]["kind"] == "build" and "distilled student" in m["provenance"]["description"]
    assert "ok" in r.stdout and "opset" in r.stdout  # the table and what the backend took
    import numpy as np

    img = np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)
    with load(out, target="onnx") as p:
        assert p.predict(img, input_color="GRAY").label in built["labels"]
    assert m["metrics"]["onnx"]["parity"]["top1_agreement"] == 1.0


def test_local_arch_with_a_safetensors_checkpoint(tmp_path):
    import torch
    from pocketvit.models import build_model
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = build_model("pocketvit-resnet", 1, 3, 28, {})
    ckpt = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(ckpt))
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n")
    out = tmp_path / "mine"
    r = invoke("export", str(ckpt), "--arch", "pocketvit-resnet", "--num-classes", "3", "--in-chans", "1",
               "--input-size", "28", "28", "--labels", str(labels), "--target", "onnx", "--out", str(out))
    assert r.exit_code == 0, r.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["labels"] == ["cat", "dog", "bird"] and m["name"] == "mine"
    assert m["input"]["color_order"] == "GRAY" and m["source"]["arch"] == "pocketvit-resnet"
    assert m["metrics"]["onnx"]["parity"]["top1_agreement"] == 1.0
    # a checkpoint that does not fit says which shapes differ and which flags to check
    r = invoke("export", str(ckpt), "--arch", "pocketvit-resnet", "--num-classes", "10", "--in-chans", "1",
               "--input-size", "28", "28", "--target", "onnx", "--out", str(tmp_path / "bad"))
    assert r.exit_code == 2 and "shape mismatch" in _flat(r.stderr) and "--num-classes" in r.stderr


def test_unknown_model_is_a_clean_error():
    r = invoke("export", "resnet10", "--target", "onnx")
    assert r.exit_code == 2, r.stderr
    err = _flat(r.stderr)
    assert "unknown model 'resnet10'" in err and "timm:resnet10t" in err and "--list-models" in err
    assert "Traceback" not in r.stderr


def test_pickled_pth_checkpoint_is_refused(tmp_path):
    import torch

    ckpt = tmp_path / "model.pth"
    torch.save(torch.nn.Linear(2, 2), ckpt)  # a pickled module, not a tensor state dict
    r = invoke("export", "timm:resnet10t", "--checkpoint", str(ckpt), "--target", "onnx", "--out", str(tmp_path / "o"))
    assert r.exit_code == 2, r.stderr
    err = _flat(r.stderr)
    assert "model.pth" in err and "safetensors" in err and "weights_only=True" in err
    assert "Traceback" not in r.stderr and not (tmp_path / "o").exists()


def test_missing_target_and_list_models():
    r = invoke("export", "timm:resnet10t")
    assert r.exit_code == 4 and "--target" in r.stderr and "Traceback" not in r.stderr
    r = invoke("export", "timm:resnet10t", "--target", "tflite")
    assert r.exit_code == 4 and "--target litert" in _flat(r.stderr)
    r = invoke("export", "--list-models", "--json")
    assert r.exit_code == 0, r.stderr
    models = {m["name"]: m for m in json.loads(r.stdout)}
    assert models["efficientnet-lite:lite0"]["status"]["onnx"] == "ok"
    assert models["timm:mobilevitv2_050"]["status"]["litert"] == "ok"  # with its linear-attention-broadcast rewrite


@pytest.mark.slow
def test_a_failed_target_leaves_the_others_in_the_bundle(tmp_path):
    """MobileViTv2 without its LiteRT rewrite does not lower to LiteRT: the bundle keeps onnx, the command exits 4
    naming litert, the known litert-torch issue with its workaround, and the target that worked."""
    out = tmp_path / "mvit"
    r = run_cli("export", "timm:mobilevitv2_050", "--target", "litert,onnx", "--input-size", "64", "64",
                "--no-rewrite", "linear-attention-broadcast", "--out", str(out))
    assert r.returncode == 4, r.stderr[-3000:]
    err = _flat(r.stderr)
    assert "written with onnx" in err and "could not export to litert" in err and "tfl.mul" in err
    assert "Known litert-torch 0.10 issue" in err and "linear-attention-broadcast" in err
    assert "Exported for this model instead: onnx." in err
    assert "Traceback" not in r.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert set(m["files"]) == {"onnx"}
    assert not [p for p in out.rglob("*") if p.suffix == ".tflite" or p.name.startswith(".")]
    assert "export failed" in (out / "README.md").read_text()
