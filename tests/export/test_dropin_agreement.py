"""uint8 NHWC drop-in files agree with the float files over the whole Fashion-MNIST test split (slow).

    POCKETVIT_FM_BUNDLE=runs/fashion-mnist/bundle .venv/bin/pytest -m slow -s tests/export/test_dropin_agreement.py

Exports the trained student (POCKETVIT_FM_BUNDLE, default runs/fashion-mnist/bundle; else the tiny recipe's
build) to litert and executorch with their uint8 drop-in files, feeds all 10,000 test images through
pocketvit.runtime to each (each file gets its own input form) and prints top-1 agreement, accuracy and the
largest probability difference per runtime.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.slow


def _scores(bundle: Path, target: str, images: np.ndarray) -> np.ndarray:
    from pocketvit.runtime import load

    with load(bundle, target=target, use_exits=False) as p:
        x = np.concatenate([p.preprocess(im, input_color="GRAY") for im in images])
        out = np.concatenate([p.run(x[i : i + 1]) for i in range(len(x))]).astype(np.float64)
    if p.outputs == "probabilities":
        return out
    e = np.exp(out - out.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_uint8_dropin_agrees_with_float_over_the_test_split(tmp_path_factory, fmnist_root):
    from pocketvit.data.fashion_mnist import load_split

    trained = Path(os.environ.get("POCKETVIT_FM_BUNDLE", ROOT / "runs" / "fashion-mnist" / "bundle"))
    src = trained if (trained / "manifest.json").is_file() else None
    if src is None:
        from pocketvit.pipeline.classify import run_build
        from pocketvit.recipe import load_recipe

        from tests.conftest import TINY

        src = tmp_path_factory.mktemp("tiny-build")
        run_build(load_recipe(TINY), TINY, src)
    bundle = tmp_path_factory.mktemp("agree") / "bundle"
    r = run_cli("export", str(src), "--target", "litert,executorch", "--dropin", "litert,executorch",
                "--out", str(bundle), "-n", "4")
    assert r.returncode == 0, r.stderr[-2000:]
    x, y = load_split(fmnist_root, "test")
    figures = {}
    for runtime in ("litert", "executorch"):
        f, d = _scores(bundle, runtime, x), _scores(bundle, f"{runtime}-dropin", x)
        figures[runtime] = {
            "images": len(x),
            "top1_agreement": float((f.argmax(1) == d.argmax(1)).mean()),
            "float_top1": float((f.argmax(1) == y).mean()),
            "uint8_top1": float((d.argmax(1) == y).mean()),
            "max_prob_diff": float(np.abs(f - d).max()),
        }
    print(json.dumps({"bundle": str(src), "uint8_vs_float": figures}))
    for runtime, fig in figures.items():
        assert fig["top1_agreement"] >= 0.999, (runtime, fig)
