"""Fixtures for tests that drive the plugin through real runtimes' libraries."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.cnitool import build_cnitool


@pytest.fixture(scope="session")
def cnitool() -> Path:
    """Our libcni-based cnitool, built once per session; a failed build fails the tests."""
    try:
        return build_cnitool()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        pytest.fail(str(e), pytrace=False)
