"""Fixtures for the export tests; the models and runners live in export_testkit.py."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")


@pytest.fixture(scope="session")
def tiny_models():
    """name -> (model, example). Built once per session; exporters never mutate the model."""
    from export_testkit import build_tiny_models

    return build_tiny_models()
