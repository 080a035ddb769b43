"""Fixtures for the runtime tests; models, exporters and bundle helpers live in runtime_testkit.py."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A bundle with onnx, litert and executorch targets of the same tiny classifier.

    The .pte holds methods forward, seg0 and seg1 (for the early-exit tests); a second .tflite
    has signatures seg0 and seg1.
    """
    torch = pytest.importorskip("torch")
    from runtime_testkit import export_onnx, export_pte, export_tflite, make_models, quiet, write_bundle

    full, s0, s1 = make_models()
    root = tmp_path_factory.mktemp("bundle")
    x = torch.randn(1, 1, 28, 28)
    feat = s0(x)[0].detach()
    export_onnx(full, x, root / "model.onnx")
    export_tflite(full, x, root / "model.tflite")
    export_pte({"forward": (full, (x,)), "seg0": (s0, (x,)), "seg1": (s1, (feat,))}, root / "model.pte")
    import litert_torch

    with quiet():
        (
            litert_torch.signature("seg0", s0, (x,))
            .signature("seg1", s1, (feat,))
            .convert()
            .export(str(root / "exits.tflite"))
        )
    write_bundle(
        root,
        {
            "onnx": ("model.onnx", "onnx", "fp32", {}),
            "litert": ("model.tflite", "litert", "fp32", {}),
            "executorch": ("model.pte", "executorch", "fp32", {}),
        },
    )
    return {"root": root, "full": full, "seg0": s0, "seg1": s1}
