"""What the XNNPACK delegate takes of a real .tflite: delegate calls, ops left outside, transposes."""

from __future__ import annotations

import pytest
from pocketvit.export.describe import backend_summary

torch = pytest.importorskip("torch")
pytest.importorskip("litert_torch")


class ConvCumsum(torch.nn.Module):
    """Two convs around a cumulative sum, which XNNPACK does not take: two delegate calls, one op outside."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.b(self.a(x).cumsum(1)).flatten(1)


def test_litert_info_counts_delegate_calls_and_ops_outside(tmp_path):
    from pocketvit.export import export_model

    torch.manual_seed(0)
    split = export_model(ConvCumsum().eval(), torch.randn(1, 3, 12, 12), "litert", tmp_path / "split").info
    assert split["delegate_calls"] == 2 and split["outside_ops"] == {"CUMSUM": 1} and split["ops_outside"] == 1
    assert split["ops_delegated"] + split["ops_outside"] == sum(split["ops"].values())
    assert "DELEGATE" not in split["ops"] and split["transposes"] == split["ops"].get("TRANSPOSE", 0)
    line = backend_summary("litert", split)
    assert "2 XNNPACK delegate call(s), 1 op(s) outside (CUMSUM x1)" in line

