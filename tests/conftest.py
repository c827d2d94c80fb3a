"""Shared helpers of the repository-level tests (run from the top: python -m pytest -q tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def venv_bin() -> Path:
    """The directory of the Python running the tests (the venv's bin/, with ansible-galaxy beside it)."""
    return Path(sys.executable).parent
