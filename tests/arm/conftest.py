"""The emulated Raspberry Pi's tests run only when asked for (`make test-arm`, i.e. pytest -m arm): their first run
builds a 7 GB image under emulation."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items):
    if "arm" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="the emulated Raspberry Pi tests run with `make test-arm` (pytest -m arm)")
    for item in items:
        if "arm" in item.keywords:
            item.add_marker(skip)
