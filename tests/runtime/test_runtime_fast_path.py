"""predict()'s fast path (an image of the model's input size; a classifier without exits) gives the
same Prediction as the general path, bit for bit: table-lookup preprocessing vs prepare_image +
preprocess_array, the short-row softmax vs numpy's, Python's stable top-k vs np.argsort, the
LiteRT set_tensor/invoke/get_tensor forward vs its signature runner."""

from __future__ import annotations

import math

import numpy as np
import pocketvit.runtime.scores as PR
import pytest
from pocketvit.errors import BundleError
from pocketvit.runtime import Backend, Bundle, Predictor, load, prepare_image, preprocess_array, softmax
from pocketvit.runtime.preprocessing import fast_preprocessor
from runtime_testkit import GRAY_SPEC, LABELS, write_bundle

RGB = {
    **GRAY_SPEC,
    "channels": 3,
    "color_order": "RGB",
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}


def general(image, spec, color, form):
    return preprocess_array(prepare_image(image, spec, color), spec, form)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def images(h=28, w=28, seed=0):
    rng = np.random.default_rng(seed)
    full = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    big = rng.integers(0, 256, (2 * h, 2 * w, 3), dtype=np.uint8)
    return {
        "gray": full[:, :, 0].copy(),
        "gray1": full[:, :, :1].copy(),
        "gray-view": big[::2, ::2, 1],  # not contiguous
        "bgr": full[:, :, :3].copy(),
        "bgra": full.copy(),
        "bgr-view": big[::2, ::2],
        "bgr-fortran": np.asfortranarray(full[:, :, :3]),
        "ramp": (np.arange(h * w * 3) % 256).astype(np.uint8).reshape(h, w, 3),  # every value
        "small": full[: h - 1],  # not the input size: general path
        "float": full[:, :, :3].astype(np.float32),  # not uint8: general path (which raises)
    }


SPECS = {
    "gray": GRAY_SPEC,
    "gray-nhwc-f16": {**GRAY_SPEC, "layout": "NHWC", "dtype": "float16"},
    "gray-no-norm": {**GRAY_SPEC, "mean": None, "std": None, "scale": 1.0},
    "rgb": RGB,
    "bgr": {**RGB, "color_order": "BGR"},
    "rgb-nhwc": {**RGB, "layout": "NHWC"},
    "rgb-resize-null": {**RGB, "resize": None, "crop": None},
}


@pytest.mark.parametrize("form", ["float-nchw", "uint8-nhwc"])
@pytest.mark.parametrize("spec_name", list(SPECS))
def test_fast_preprocessing_matches_general(spec_name, form):
    spec = SPECS[spec_name]
    fast = fast_preprocessor(spec, form)
    assert fast is not None
    taken = 0
    for name, img in images().items():
        for color in ("BGR", "RGB", "GRAY", "bgr"):
            x = fast(img, color)
            try:
                want = general(img, spec, color, form)
            except (ValueError, TypeError):
                assert x is None, (name, color)  # the general path raises: the fast path declines
                continue
            if x is None:
                continue
            taken += 1
            assert same(x, want), (spec_name, form, name, color)
            assert x.flags.c_contiguous and x.flags.writeable and not np.shares_memory(x, img)
    # the fast path is taken for the camera-loop images, not only declined
    assert taken >= (6 if spec["channels"] == 1 else 15)


def test_fast_preprocessor_only_when_resize_and_crop_do_nothing():
    assert fast_preprocessor({**GRAY_SPEC, "resize": 32, "crop": [28, 28]}) is None
    assert fast_preprocessor({**GRAY_SPEC, "crop": [24, 24]}) is None
    assert fast_preprocessor({**RGB, "resize": [28, 28], "crop": [28, 28]}) is not None
    assert fast_preprocessor(GRAY_SPEC, "int8-nchw") is None  # an unknown form
    img = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    x = fast_preprocessor(GRAY_SPEC, "float-nhwc")(img, "GRAY")  # drop-in float form: the pixels as float32
    assert x.dtype == np.float32 and x.shape == (1, 28, 28, 1) and np.array_equal(x[0, :, :, 0], img)
    assert fast_preprocessor({**GRAY_SPEC, "channels": 4, "color_order": "RGBA"}) is None


def test_pairwise_sum_is_numpys():
    rng = np.random.default_rng(0)
    for n in list(range(1, 40)) + [63, 64, 127, 128, 129, 200, 257, 300]:
        for scale in (1e-3, 1.0, 1e3):
            e = np.exp(rng.normal(size=n) * 4) * scale
            assert (
                PR.pairwise_sum(e.tolist()) == float(e.sum()) == float(e[None].sum(-1, keepdims=True)[0, 0])
            )


def test_short_row_softmax_is_numpys():
    rng = np.random.default_rng(1)
    rows = []
    for n in range(1, PR.SMALL_SOFTMAX_MAX + 1):
        assert PR.small_softmax_exact(n)
        for scale in (1e-3, 0.5, 3.0, 30.0, 300.0):
            rows.append((rng.standard_normal(n) * scale).astype(np.float32))
    rows += [
        np.zeros(10, np.float32),  # all tied
        np.array([1, 1, 2, 2, 2, 0, 0, 3, 3, 1], np.float32),
        np.array([-np.inf, 0, 1, -np.inf, 2, 0, 0, 0, 0, 0], np.float32),
        np.array([88, 89, -1e30, 1e30, 0, 0, 0, 0, 0, 1e30], np.float32),
        np.full(10, np.finfo(np.float32).max, np.float32),
    ]
    for row in rows:
        got = PR.softmax_list(row.tolist())
        assert got is not None and same(got, softmax(row[None])[0]), row
    for bad in ([np.nan] + [0.0] * 9, [0.0] * 9 + [np.inf], [-np.inf] * 10, [1.0, np.nan, 2.0]):
        assert PR.softmax_list(bad) is None  # numpy's softmax then (NaN rows)
    assert not PR.small_softmax_exact(PR.SMALL_SOFTMAX_MAX + 1)


class FakeBackend(Backend):
    """Returns the output it is given, whatever the input (to drive the postprocessing)."""

    runtime = "onnx"
    input_shape = (1, 1, 28, 28)
    method_names = ("forward",)

    def __init__(self):
        super().__init__("fake.onnx")
        self.y = None

    def _run_forward(self, x):
        return self.y


def fake_predictor(tmp_path, labels, outputs="logits"):
    root = tmp_path / f"b{len(labels)}-{outputs}"
    root.mkdir()
    (root / "m.onnx").write_bytes(b"not a model: the backend is a fake")
    write_bundle(root, {"onnx": ("m.onnx", "onnx", "fp32", {})}, labels=labels, outputs=outputs)
    b = FakeBackend()
    return Predictor(Bundle.open(root), "onnx", b), b


def check_same(p: Predictor, img, color="GRAY", topk=5):
    try:
        want = p.predict_array(p._preprocess_many([img], color), topk)[0]
    except BundleError as e:
        with pytest.raises(BundleError, match="rebuild the bundle"):
            p.predict(img, color, topk)
        return str(e)
    got = p.predict(img, color, topk)
    # repr: floats exactly (NaN equal to NaN, -0.0 not equal to 0.0)
    assert repr((got.label, got.score, got.topk, got.exit, got.index)) == repr(
        (want.label, want.score, want.topk, want.exit, want.index)
    )
    assert type(got.index) is type(want.index) is int
    assert same(got.scores, want.scores) and got.embedding is want.embedding is None
    assert got.latency_ms == p.last_latency_ms > 0
    return got


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf - inf, both paths
@pytest.mark.parametrize("outputs", ["logits", "probabilities"])
@pytest.mark.parametrize("n", [10, 25, 80])  # Python top-k and softmax; numpy top-k; numpy softmax
def test_fast_postprocessing_matches_general(tmp_path, n, outputs):
    labels = [f"c{i}" for i in range(n)]
    p, b = fake_predictor(tmp_path, labels, outputs)
    assert p._fast_pre is not None and p._fast_post
    assert p._small_softmax == (outputs == "logits" and n <= PR.SMALL_SOFTMAX_MAX)
    img = np.zeros((28, 28), np.uint8)
    rng = np.random.default_rng(n)
    ys = [(rng.standard_normal((1, n)) * s).astype(np.float32) for s in (0.1, 1, 10, 100) for _ in range(5)]
    ties = np.zeros((1, n), np.float32)
    ties[0, ::3] = 2.0
    ys += [
        np.zeros((1, n), np.float32),
        ties,
        np.where(np.arange(n) % 4 == 0, -np.inf, 1.0).astype(np.float32)[None],
        np.where(np.arange(n) == 3, np.nan, 1.0).astype(np.float32)[None],
        np.where(np.arange(n) == 1, np.inf, 0.0).astype(np.float32)[None],
        rng.standard_normal((1, n)),  # float64 output
        rng.standard_normal((1, n)).astype(np.float16),
        rng.standard_normal((1, n, 1, 1)).astype(np.float32),
        rng.standard_normal((2, n)).astype(np.float32),
    ]
    if outputs == "probabilities":
        ys += [softmax(y.astype(np.float32).reshape(1, -1)) for y in ys[:20]]
    for y in ys:
        b.y = y
        for topk in (1, 3, 5, n, n + 7, 0, -1, 4.0, np.int64(2)):
            check_same(p, img, topk=topk)
    for bad in (rng.standard_normal((1, n + 1)).astype(np.float32), np.zeros((n,), np.float32)):
        b.y = bad
        assert "outputs" in check_same(p, img)  # same error as the general path


def test_top_matches_argsort(tmp_path):
    p, _ = fake_predictor(tmp_path, LABELS)
    rng = np.random.default_rng(3)
    cases = [rng.random(10).astype(np.float32) for _ in range(50)]
    cases += [np.round(rng.random(10), 1).astype(np.float32) for _ in range(50)]  # many ties
    cases += [np.array([0.0, -0.0, 0.5, 0.5, np.inf, 0, 0, 0.5, -np.inf, 1], np.float32)]
    cases += [np.array([0.1, np.nan, 0.5, 0.5, 0.2, 0, 0, 0.5, np.nan, 1], np.float32)]
    for q in cases:
        for k in (1, 4, 10, 11):
            order = np.argsort(-q, kind="stable")[: min(k, 10)]
            best, top = p._top(q, k)
            assert best == int(order[0])
            want = [(LABELS[i], float(q[i])) for i in order]
            assert [lab for lab, _ in top] == [lab for lab, _ in want]
            assert all(a == b or (math.isnan(a) and math.isnan(b)) for (_, a), (_, b) in zip(top, want))


@pytest.mark.parametrize("target", ["onnx", "litert", "executorch"])
def test_fast_path_matches_general_on_real_runtimes(tiny, target):
    p = load(tiny["root"], target=target, num_threads=1)
    assert p._fast_pre is not None and p._fast_post and p._small_softmax
    rng = np.random.default_rng(4)
    for i in range(12):
        img = rng.integers(0, 256, [(28, 28), (28, 28, 1), (28, 28, 3)][i % 3], dtype=np.uint8)
        color = ["GRAY", "BGR", "RGB"][i % 3]
        fast = p.preprocess(img, color)
        assert same(fast, general(img, p.input_spec, color, p.input_form))
        r = check_same(p, img, color, topk=1 + i % 10)
        assert r.label in LABELS
    p.close()


def test_litert_direct_forward_matches_signature_runner(tiny):
    from pocketvit.runtime import open_backend

    b = open_backend("litert", tiny["root"] / "model.tflite", num_threads=1)
    assert b._direct is not None  # one signature, in the primary subgraph
    rng = np.random.default_rng(5)
    xs = [rng.normal(size=(1, 1, 28, 28)).astype(np.float32) for _ in range(3)]
    for x in xs:
        y = b.run(x)
        assert y.shape == (1, 10) and y.flags.writeable
        assert same(y, b._run_signature(b.forward_signature, [x])[0])  # the runner resizes and allocates
        assert same(b.run(x), y)  # and the direct path still runs after it
        assert same(b.run_method("forward", [x])[0], y)
    kept = b.run(xs[0])
    b.run(xs[1])
    assert not np.shares_memory(kept, b.run(xs[2]))  # outputs are copies, not the interpreter's buffer
    assert same(b.run(np.concatenate(xs)), np.concatenate([b.run(x) for x in xs]))
    b.close()
    seg = open_backend("litert", tiny["root"] / "exits.tflite", num_threads=1)
    assert seg._direct is None  # two signatures and no forward: the runners
    seg.close()


def test_litert_direct_forward_only_in_the_primary_subgraph(tiny, tmp_path):
    """forward + segment signatures in one .tflite: the direct path when forward is subgraph 0 (and
    runners for the segments in between), the signature runner when it is another subgraph."""
    torch = pytest.importorskip("torch")
    litert_torch = pytest.importorskip("litert_torch")
    from pocketvit.runtime import open_backend
    from runtime_testkit import quiet

    x = torch.randn(1, 1, 28, 28)
    feat = tiny["seg0"](x)[0].detach()
    mods = {"forward": (tiny["full"], (x,)), "seg0": (tiny["seg0"], (x,)), "seg1": (tiny["seg1"], (feat,))}
    xn = np.random.default_rng(6).normal(size=(1, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        want = tiny["full"](torch.from_numpy(xn)).numpy()
    for order, direct in ((["forward", "seg0", "seg1"], True), (["seg0", "seg1", "forward"], False)):
        conv = None
        with quiet():
            for name in order:
                m, a = mods[name]
                conv = litert_torch.signature(name, m, a) if conv is None else conv.signature(name, m, a)
            conv.convert().export(str(tmp_path / "multi.tflite"))
        b = open_backend("litert", tmp_path / "multi.tflite", num_threads=1)
        assert (b._direct is not None) == direct, order
        y = b.run(xn)
        np.testing.assert_allclose(y, want, atol=1e-4)
        f, _ = b.run_method("seg0", [xn])
        assert same(b.run(xn), y)  # after a runner was used
        np.testing.assert_allclose(b.run_method("seg1", [f])[0], want, atol=1e-4)
        b.close()


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("n", [10, 25, 80])  # 80: beyond the short-row path, numpy's softmax
def test_exit_decision_probability_is_the_softmax_maximum(tmp_path, n):
    """An exit's decision uses float32(1 / sum exp(v - max)): the same float as the softmax's top-1."""
    p, _ = fake_predictor(tmp_path, [f"c{i}" for i in range(n)])
    rng = np.random.default_rng(n)
    ys = [(rng.standard_normal((1, n)) * s).astype(np.float32) for s in (0.01, 0.3, 1, 3, 10, 100) for _ in range(200)]
    ties = np.zeros((1, n), np.float32)
    ties[0, ::3] = 2.0
    ys += [np.zeros((1, n), np.float32), ties, np.where(np.arange(n) == 3, np.nan, 1.0).astype(np.float32)[None],
           np.where(np.arange(n) == 1, np.inf, 0.0).astype(np.float32)[None], rng.standard_normal((1, n))]
    for y in ys:
        assert repr(p._top1_probability(y)) == repr(float(p._scores(y)[0].max()))
