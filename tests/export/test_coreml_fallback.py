"""Core ML's torch.jit.trace route: a model the torch.export frontend cannot take (GhostNet: "Unsupported fx node
alias", coremltools#2517) is traced instead, for the float file and the drop-in image classifier, said once, and
spec-checked. A tiny model of GhostNet's structure (timm's GhostModule) stands in for GhostNet."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
pytest.importorskip("coremltools")

LABELS = ["a", "b", "c", "d"]
SPEC = {"height": 16, "width": 16, "channels": 3, "layout": "NCHW", "dtype": "float32", "color_order": "RGB",
        "resize": 16, "crop": [16, 16], "scale": 1 / 255, "mean": [0.5] * 3, "std": [0.25] * 3}


def ghost_like():
    """conv stem, a GhostModule whose output keeps every channel (`out[:, :out_chs]` of all of them: torch.export
    writes that slice as aten.alias), pooling, a linear head."""
    from timm.models.ghostnet import GhostModule
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), GhostModule(8, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, len(LABELS))).eval()


def test_coreml_falls_back_to_tracing_and_says_why(tmp_path):
    from pocketvit.export.coreml import export_coreml

    f = export_coreml(ghost_like(), torch.zeros(1, 3, 16, 16), tmp_path / "m.mlpackage", model_name="ghost")
    assert f.info["frontend"] == "torch.jit.trace" and "alias" in f.info["fallback_reason"]
    assert f.info["spec_check"]["ok"] and f.info["executed"] is False


def test_coreml_dropin_falls_back_to_tracing(tmp_path):
    from pocketvit.export.coreml_image import export_coreml_image

    f = export_coreml_image(ghost_like(), SPEC, LABELS, tmp_path, model_name="ghost")
    assert f.info["frontend"] == "torch.jit.trace" and "alias" in f.info["fallback_reason"]
    check = f.info["spec_check"]
    assert check["ok"], check["problems"]
    assert check["labels"] == LABELS and check["color_space"] == "RGB"


def test_export_to_bundle_says_it_once(tmp_path):
    """`pocketvit export --target coreml`: the float file and the drop-in both trace; one note says so."""
    from pocketvit.models.sources import ResolvedModel
    from pocketvit.pipeline.export_model import export_to_bundle

    resolved = ResolvedModel(spec="ghost", kind="local", name="ghost", model=ghost_like(), input=SPEC, labels=LABELS,
                             source={"arch": "test-ghost"}, description="a tiny GhostNet-like model",
                             weights="random", license="test only")
    result = export_to_bundle(resolved, ["coreml"], tmp_path / "bundle", n_inputs=2, latency_runs=2)
    assert not result["failed"]
    assert {t: r["backend"]["frontend"] for t, r in result["targets"].items()} == {
        "coreml": "torch.jit.trace", "coreml-dropin": "torch.jit.trace"}
    notes = [n for n in result["notes"] if "torch.jit.trace" in n]
    assert len(notes) == 1 and notes[0].startswith("coreml, coreml-dropin:") and "alias" in notes[0]
    assert "torch.export failed" in result["targets"]["coreml"]["summary"]
    assert {"model.mlpackage", "model-dropin.mlpackage"} <= {p.name for p in (tmp_path / "bundle").iterdir()}


class _PadToWindow(torch.nn.Module):
    """Swin's window padding: a branch on the input's size. torch.export fixes it for the static shape; under
    torch.jit.trace the size is a tensor, so pocketvit refuses the trace (it would freeze the branch)."""

    def forward(self, x):
        h = x.shape[2]
        if h % 3:
            x = torch.nn.functional.pad(x, (0, 0, 0, 3 - h % 3))
        return x


def swin_like():
    """ghost_like (an aten.alias under torch.export) behind a Swin-style size branch: neither torch.export (alias)
    nor the trace (refused) converts it; the torch.export program without its alias nodes does."""
    from timm.models.ghostnet import GhostModule
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), _PadToWindow(), GhostModule(8, 8), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, len(LABELS))).eval()


def test_coreml_drops_alias_nodes_when_the_trace_is_refused(tmp_path):
    from pocketvit.export.coreml import export_coreml
    from pocketvit.export.coreml_image import export_coreml_image

    f = export_coreml(swin_like(), torch.zeros(1, 3, 16, 16), tmp_path / "m.mlpackage", model_name="swin")
    assert f.info["frontend"] == "torch.export" and f.info["rewrite"] == "alias-as-identity"
    assert f.info["aliases_dropped"] >= 1 and "alias" in f.info["fallback_reason"]
    assert "tensor values" in f.info["trace_refused"] and f.info["spec_check"]["ok"]
    d = export_coreml_image(swin_like(), SPEC, LABELS, tmp_path, model_name="swin")
    assert d.info["rewrite"] == "alias-as-identity" and d.info["spec_check"]["ok"], d.info["spec_check"]
