"""Every entry point's bad inputs, one table: each gets one short message naming the thing and the fix, its
documented exit code (docs/commands.md), no traceback, and nothing half-written.

The CLI cases run the real commands in this process (typer's CliRunner: exit code and stderr as a user sees them);
the runtime API cases call pocketvit.runtime on a bundle made here in milliseconds (a hand-written ONNX graph, no
torch). The odd but valid images (16-bit, CMYK, animated) are read, not refused: see the last tests.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pocketvit import runtime as rt

from tests.conftest import FMNIST, TINY, onnx_classifier

LABELS = ["circle", "square", "star"]
SPEC = {"height": 8, "width": 8, "channels": 1, "layout": "NCHW", "dtype": "float32", "color_order": "GRAY",
        "resize": 8, "crop": [8, 8], "scale": 1 / 255, "mean": [0.5], "std": [0.5]}
FM_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# --------------------------------------------------------------------------- inputs, made once


def _png(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels (its data does not: only the header is read before refusing)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _zip(path: Path, entries: list[tuple[str, bytes, int | None]]) -> Path:
    """A zip with these (name, data, unix mode or None) entries, odd ones included."""
    import warnings

    with warnings.catch_warnings():  # a duplicate name is the point of one of them
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(path, "w") as z:
            for name, data, mode in entries:
                info = zipfile.ZipInfo(name)
                if mode is not None:
                    info.external_attr = mode << 16
                z.writestr(info, data)
    return path


@pytest.fixture(scope="module")
def f(tmp_path_factory) -> dict[str, Path]:
    """Every bad (and odd but valid) input of the table, and a working bundle."""
    from pocketvit.runtime import file_entry, write_manifest

    d = tmp_path_factory.mktemp("bad-inputs")
    bundle = d / "bundle"
    bundle.mkdir()
    onnx_classifier(bundle / "model.onnx")
    write_manifest(bundle, {"name": "tiny", "task": "classify", "labels": LABELS, "input": SPEC, "outputs": "logits",
                            "files": {"onnx": file_entry(bundle, "onnx", "model.onnx", "onnx", "fp32")},
                            "created_with": "pocketvit tests"})
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(d / "ok.png")
    Image.fromarray(rgb).save(d / "ok.jpg", quality=90)
    (d / "text.png").write_text("not an image, a text file with an image's name\n")
    (d / "empty.png").write_bytes(b"")
    for name in ("ok.png", "ok.jpg"):
        data = (d / name).read_bytes()
        (d / f"truncated{Path(name).suffix}").write_bytes(data[: len(data) // 2])
    (d / "huge.png").write_bytes(_png(40000, 40000))
    Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257).save(d / "gray16.png")
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg")
    frames = [Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)) for _ in range(3)]
    frames[0].save(d / "animated.gif", save_all=True, append_images=frames[1:])
    (d / "folder").mkdir()
    (d / "a-file").write_text("x")
    # bundles that are not what they claim
    damaged = d / "damaged-bundle"
    shutil.copytree(bundle, damaged)
    (damaged / "model.onnx").write_bytes((damaged / "model.onnx").read_bytes()[:-8] + b"\x00" * 8)
    notjson = d / "notjson-bundle"
    shutil.copytree(bundle, notjson)
    (notjson / "manifest.json").write_text("{ this is not json")
    manifest = (bundle / "manifest.json").read_bytes()
    model = (bundle / "model.onnx").read_bytes()
    _zip(d / "traversal.zip", [("manifest.json", manifest, None), ("../evil.txt", b"x", None)])
    _zip(d / "absolute.zip", [("manifest.json", manifest, None), ("/tmp/evil.txt", b"x", None)])
    _zip(d / "symlink.zip", [("manifest.json", manifest, None), ("model.onnx", b"/etc/passwd", 0o120777)])
    _zip(d / "fifo.zip", [("manifest.json", manifest, None), ("model.onnx", b"", 0o010644)])
    _zip(d / "duplicate.zip", [("manifest.json", manifest, None), ("model.onnx", model, None),
                               ("manifest.json", b"{}", None)])
    _zip(d / "nomanifest.zip", [("model.onnx", model, None)])
    _zip(d / "empty.zip", [])
    ok_zip = _zip(d / "ok.zip", [("manifest.json", manifest, None), ("model.onnx", model, None)])
    (d / "cut.zip").write_bytes(ok_zip.read_bytes()[: len(ok_zip.read_bytes()) // 2])
    # recipes and data
    (d / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (d / "broken.yaml").write_text("name: tiny\ndata: {root: [unclosed\n")
    trunc = d / "fm-truncated"
    wrong = d / "fm-wrong-magic"
    for folder in (trunc, wrong):
        folder.mkdir()
        for name in FM_FILES:
            os.symlink(FMNIST / f"{name}.gz", folder / f"{name}.gz")
    (trunc / "train-images-idx3-ubyte.gz").unlink()
    (trunc / "train-images-idx3-ubyte.gz").write_bytes((FMNIST / "train-images-idx3-ubyte.gz").read_bytes()[:50_000])
    (wrong / "t10k-labels-idx1-ubyte.gz").unlink()
    import gzip

    (wrong / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"PK\x03\x04 a zip, not an idx file"))
    (d / "no-images").mkdir()
    (d / "no-images" / "notes.txt").write_text("no images here")
    (d / "unreadable-images" / "cats").mkdir(parents=True)
    for i in range(3):
        (d / "unreadable-images" / "cats" / f"{i}.jpg").write_text("not a jpeg")
    return {"dir": d, "bundle": bundle, **{p.name: p for p in d.iterdir()}}


# --------------------------------------------------------------------------- the CLI


@dataclass
class Cli:
    id: str
    args: Callable[[dict], list]
    code: int
    says: str  # a piece of the one error line (whitespace-normalised)
    untouched: Callable[[dict], Path] | None = None  # a path that must not exist afterwards (nothing half-written)


def _build(f: dict, *sets: str, out: str = "out") -> list:
    return ["build", str(TINY), "--out", str(f["dir"] / out), *[x for s in sets for x in ("--set", s)]]


CLI_CASES = [
    # pocketvit predict: images
    Cli("predict-not-an-image", lambda f: ["predict", f["bundle"], f["text.png"]], 7, "text.png: not an image file"),
    Cli("predict-empty-image", lambda f: ["predict", f["bundle"], f["empty.png"]], 7, "empty.png is empty (0 bytes)"),
    Cli("predict-truncated-png", lambda f: ["predict", f["bundle"], f["truncated.png"]], 7, "truncated or damaged"),
    Cli("predict-truncated-jpeg", lambda f: ["predict", f["bundle"], f["truncated.jpg"]], 7, "truncated or damaged"),
    Cli("predict-huge-image", lambda f: ["predict", f["bundle"], f["huge.png"]], 7, "too large to decode safely"),
    Cli("predict-missing-image", lambda f: ["predict", f["bundle"], f["dir"] / "nope.png"], 7, "no such image file"),
    Cli("predict-folder-as-image", lambda f: ["predict", f["bundle"], f["folder"]], 7, "is a folder, not an image"),
    Cli("predict-topk-zero", lambda f: ["predict", f["bundle"], f["ok.png"], "--topk", "0"], 2, "--topk"),
    # pocketvit predict: bundles
    Cli("predict-missing-bundle", lambda f: ["predict", f["dir"] / "nope", f["ok.png"]], 3, "no such bundle"),
    Cli("predict-file-as-bundle", lambda f: ["predict", f["a-file"], f["ok.png"]], 3, "not a bundle"),
    Cli("predict-unknown-target", lambda f: ["predict", f["bundle"], f["ok.png"], "-t", "tflite"], 3,
        "has no target 'tflite'"),
    Cli("predict-damaged-model", lambda f: ["predict", f["damaged-bundle"], f["ok.png"]], 3, "sha256 mismatch"),
    Cli("predict-manifest-not-json", lambda f: ["predict", f["notjson-bundle"], f["ok.png"]], 3, "not valid JSON"),
    Cli("predict-zip-traversal", lambda f: ["predict", f["traversal.zip"], f["ok.png"]], 3, "outside the extraction"),
    Cli("predict-zip-absolute-path", lambda f: ["predict", f["absolute.zip"], f["ok.png"]], 3, "outside the extraction"),
    Cli("predict-zip-symlink", lambda f: ["predict", f["symlink.zip"], f["ok.png"]], 3, "is a symbolic link"),
    Cli("predict-zip-fifo", lambda f: ["predict", f["fifo.zip"], f["ok.png"]], 3, "not a plain file or folder"),
    Cli("predict-zip-duplicate", lambda f: ["predict", f["duplicate.zip"], f["ok.png"]], 3, "two entries named"),
    Cli("predict-zip-no-manifest", lambda f: ["predict", f["nomanifest.zip"], f["ok.png"]], 3, "holds no manifest"),
    Cli("predict-zip-empty", lambda f: ["predict", f["empty.zip"], f["ok.png"]], 3, "the zip is empty"),
    Cli("predict-zip-cut-short", lambda f: ["predict", f["cut.zip"], f["ok.png"]], 3, "not a bundle"),
    # pocketvit build: recipes, output folders, data
    Cli("build-missing-recipe", lambda f: ["build", f["dir"] / "nope.yaml"], 2, "not found"),
    Cli("build-recipe-is-a-folder", lambda f: ["build", f["folder"]], 2, "is a folder; pass a recipe file"),
    Cli("build-recipe-not-text", lambda f: ["build", f["binary.yaml"]], 2, "not a text file"),
    Cli("build-recipe-bad-yaml", lambda f: ["build", f["broken.yaml"]], 2, "not valid YAML"),
    Cli("build-out-is-a-file", lambda f: ["build", TINY, "--out", f["a-file"]], 9, "is a file; pass a folder"),
    Cli("build-out-under-a-file", lambda f: ["build", TINY, "--out", f["a-file"] / "run"], 9, "is a file, not a folder"),
    Cli("build-out-not-writable", lambda f: ["build", TINY, "--out", "/sys/pocketvit-run"], 9, "cannot write in"),
    Cli("build-data-truncated-gz", lambda f: _build(f, f"data.root={f['fm-truncated']}"), 2,
        "train-images-idx3-ubyte.gz: the gzip data is truncated", lambda f: f["dir"] / "out"),
    Cli("build-data-wrong-magic", lambda f: _build(f, f"data.root={f['fm-wrong-magic']}"), 2,
        "t10k-labels-idx1-ubyte.gz: not an unsigned-byte idx file", lambda f: f["dir"] / "out"),
    Cli("build-data-missing-folder", lambda f: _build(f, f"data.root={f['dir'] / 'nope'}"), 2,
        "data.root: folder", lambda f: f["dir"] / "out"),
    Cli("build-image-folder-no-images", lambda f: _build(f, "data.dataset=image-folder", f"data.root={f['no-images']}"),
        2, "holds no images", lambda f: f["dir"] / "out"),
    Cli("build-image-folder-unreadable", lambda f: _build(f, "data.dataset=image-folder",
                                                          f"data.root={f['unreadable-images']}"),
        2, "could be read", lambda f: f["dir"] / "out"),
    Cli("build-unknown-until", lambda f: [*_build(f), "--until", "everything"], 1,
        "not a stage", lambda f: f["dir"] / "out" / "bundle"),
    Cli("validate-bad-value", lambda f: ["validate", TINY, "--set", "distill.epochs=-1"], 2, "distill.epochs"),
    # the other commands' paths
    Cli("verify-missing-bundle", lambda f: ["verify", f["dir"] / "nope"], 3, "no such bundle"),
    Cli("bench-out-is-a-folder", lambda f: ["bench", f["bundle"], "--out", f["folder"]], 9, "is a folder; pass a file"),
    Cli("bench-plot-under-a-file", lambda f: ["bench", f["bundle"], "--plot", f["a-file"] / "p.png"], 9,
        "is a file, not a folder"),
    Cli("export-out-is-a-file", lambda f: ["export", "timm:resnet18", "--target", "onnx", "--out", f["a-file"]], 9,
        "is a file; pass a folder"),
    Cli("export-unknown-target", lambda f: ["export", "timm:resnet18", "--target", "tensorrt"], 4, "tensorrt"),
    Cli("inspect-missing-bundle", lambda f: ["inspect", f["dir"] / "nope"], 3, "no such bundle"),
    Cli("data-photos-into-a-file", lambda f: ["data", "photos", f["a-file"]], 9, "is a file; pass a folder"),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_bad_input(case: Cli, f):
    from pocketvit.cli.main import app
    from typer.testing import CliRunner

    r = CliRunner().invoke(app, [str(a) for a in case.args(f)])
    assert r.exit_code == case.code, (r.exit_code, r.stderr, r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    err = r.stderr
    assert "Traceback" not in r.output and "Traceback" not in err
    problems = [line for line in err.splitlines() if line.lower().startswith(("error", "usage", "╭", "│ invalid"))]
    assert problems, err
    if case.code != 2 or "error:" in err:  # typer's own usage errors (exit 2) draw a box
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, err  # one message
        assert len(errors[0]) < 600, errors[0]  # short
    assert case.says in " ".join(err.split()), err
    if case.untouched is not None:
        assert not case.untouched(f).exists()  # nothing half-written


def test_predict_goes_on_past_a_bad_image(f):
    """Two images, one bad: the good one's line on stdout, one error line, exit 7."""
    from pocketvit.cli.main import app
    from typer.testing import CliRunner

    r = CliRunner().invoke(app, ["predict", str(f["bundle"]), str(f["text.png"]), str(f["ok.png"]), "--json"])
    assert r.exit_code == 7
    assert [json.loads(line)["image"] for line in r.stdout.splitlines()] == [str(f["ok.png"])]
    assert [line for line in r.stderr.splitlines() if line.strip()] == [
        line for line in r.stderr.splitlines() if line.startswith("error:") and "text.png" in line]


# --------------------------------------------------------------------------- the runtime API


@dataclass
class Api:
    id: str
    call: Callable[[object, dict], object]  # (predictor, inputs)
    says: str
    error: str = "InputError"


U8 = np.uint8
API_CASES = [
    Api("predict-empty-array", lambda p, f: p.predict(np.zeros((0, 0, 3), U8)), "empty"),
    Api("predict-empty-rows", lambda p, f: p.predict(np.zeros((0, 12), U8)), "empty"),
    Api("predict-float-array", lambda p, f: p.predict(np.ones((8, 8, 3), np.float32)), "uint8 image"),
    Api("predict-nan-array", lambda p, f: p.predict(np.full((8, 8), np.nan, np.float32)), "NaN"),
    Api("predict-16-bit-array", lambda p, f: p.predict(np.zeros((8, 8, 3), np.uint16)), "16-bit"),
    Api("predict-int64-array", lambda p, f: p.predict(np.zeros((8, 8), np.int64)), "x.astype(np.uint8)"),
    Api("predict-bool-array", lambda p, f: p.predict(np.zeros((8, 8), bool)), "got dtype bool"),
    Api("predict-1d-array", lambda p, f: p.predict(np.zeros(64, U8)), "HxW"),
    Api("predict-batch-as-image", lambda p, f: p.predict(np.zeros((2, 8, 8, 3), U8)), "predict_batch"),
    Api("predict-two-channels", lambda p, f: p.predict(np.zeros((8, 8, 2), U8)), "C in 1, 3 or 4"),
    Api("predict-none", lambda p, f: p.predict(None), "got None"),
    Api("predict-ragged-list", lambda p, f: p.predict([[1, 2], [3]]), "expected an image"),
    Api("predict-unknown-colour", lambda p, f: p.predict(np.zeros((9, 9, 3), U8), input_color="XYZ"), "input_color"),
    Api("predict-gray-colour-of-rgb", lambda p, f: p.predict(np.zeros((9, 9, 3), U8), input_color="GRAY"),
        "input_color='GRAY'"),
    Api("predict-missing-file", lambda p, f: p.predict(str(f["dir"] / "nope.png")), "no such image file"),
    Api("predict-folder", lambda p, f: p.predict(f["folder"]), "is a folder"),
    Api("predict-empty-file", lambda p, f: p.predict(f["empty.png"]), "empty (0 bytes)"),
    Api("predict-text-file", lambda p, f: p.predict(f["text.png"]), "not an image file"),
    Api("predict-truncated-png", lambda p, f: p.predict(f["truncated.png"]), "truncated"),
    Api("predict-truncated-jpeg", lambda p, f: p.predict(f["truncated.jpg"]), "truncated"),
    Api("predict-huge-png", lambda p, f: p.predict(f["huge.png"]), "too large"),
    Api("predict-array-empty-batch", lambda p, f: p.predict_array(np.zeros((0, 1, 8, 8), np.float32)), "empty"),
    Api("predict-array-wrong-rank", lambda p, f: p.predict_array(np.zeros((1, 8, 8), np.float32)),
        "batch of shape [N, 1, 8, 8]"),
    Api("predict-array-wrong-shape", lambda p, f: p.predict_array(np.zeros((1, 3, 8, 8), np.float32)),
        "got (1, 3, 8, 8)"),
    Api("predict-array-raw-pixels", lambda p, f: p.predict_array(np.zeros((1, 1, 8, 8), U8)), "raw pixels"),
    Api("predict-array-nan", lambda p, f: p.predict_array(np.full((1, 1, 8, 8), np.nan, np.float32)), "NaN"),
    Api("predict-array-inf", lambda p, f: p.predict_array(np.full((2, 1, 8, 8), np.inf, np.float32)), "infinite"),
    Api("preprocess-empty", lambda p, f: p.preprocess(np.zeros((5, 0), U8)), "empty"),
    Api("preprocess-float", lambda p, f: p.preprocess(np.zeros((8, 8), np.float64)), "uint8 image"),
    Api("preprocess-batch-of-nothing", lambda p, f: rt.preprocess_batch([], SPEC), "at least one image"),
    Api("predict-batch-bad-member", lambda p, f: p.predict_batch([np.zeros((8, 8), U8), np.zeros((8, 8), np.float32)]),
        "uint8 image"),
    Api("load-missing-bundle", lambda p, f: rt.load(f["dir"] / "nope"), "no such bundle", "BundleError"),
    Api("load-unknown-target", lambda p, f: rt.load(f["bundle"], target="x"), "has no target 'x'", "BundleError"),
    Api("load-zip-traversal", lambda p, f: rt.load(f["traversal.zip"]), "outside the extraction", "BundleError"),
]


@pytest.fixture(scope="module")
def predictor(f):
    from pocketvit.runtime import load

    with load(f["bundle"], target="onnx") as p:
        yield p


@pytest.mark.parametrize("case", API_CASES, ids=[c.id for c in API_CASES])
def test_runtime_api_bad_input(case: Api, predictor, f):
    from pocketvit import errors

    with pytest.raises(getattr(errors, case.error)) as e:
        case.call(predictor, f)
    text = str(e.value)
    assert case.says in text, text
    assert "\n" not in text and len(text) < 500, text  # one short line


def test_input_errors_are_value_and_type_errors():
    """Code written against the runtime before InputError still catches what it caught (ValueError, TypeError)."""
    from pocketvit.errors import InputError, PocketVitError

    assert issubclass(InputError, ValueError) and issubclass(InputError, TypeError)
    assert issubclass(InputError, PocketVitError) and InputError.exit_code == 7


@pytest.mark.parametrize("name", ["gray16.png", "cmyk.jpg", "animated.gif"])
def test_odd_but_valid_images_are_read(name, f, predictor):
    """16-bit (its high byte), CMYK (to RGB) and animated (the first frame) images give a prediction, the same as the
    8-bit RGB image of the same pixels would."""
    from pocketvit.runtime import read_image

    a, color = read_image(f[name])
    assert a.dtype == np.uint8 and a.ndim == 3 and color == "RGB"
    r = predictor.predict(f[name])
    assert r.label in LABELS
    if name == "gray16.png":  # the 8-bit image of the same pixels
        eight = np.asarray(Image.open(f["ok.png"]))[:, :, 0]
        assert predictor.predict(eight, input_color="GRAY").scores.tolist() == r.scores.tolist()
    if name == "animated.gif":
        first = np.asarray(Image.open(f[name]).convert("RGB"))
        assert predictor.predict(first, input_color="RGB").label == r.label


def test_predict_on_a_non_image_prints_one_line(f):
    """The real command, in its own process: one line on stderr, nothing on stdout, exit 7."""
    from tests.conftest import run_cli

    r = run_cli("predict", str(f["bundle"]), str(f["text.png"]))
    assert r.returncode == 7
    assert r.stdout == ""
    assert [line for line in r.stderr.splitlines() if line.strip()] == [
        (f"error: {f['text.png']}: not an image file (Pillow does not recognise its format); pass a PNG, JPEG, BMP, "
        "GIF, WebP or TIFF image")]
