"""Optional packages the tests use when they are installed."""

from __future__ import annotations

import importlib.util

import pytest


def require_package(name: str, install: str) -> None:
    """Skip unless package ``name`` is installed; it is not imported (aisfx's own code needs PyTorch)."""
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed ({install})")
