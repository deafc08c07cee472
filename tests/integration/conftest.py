"""Fixtures for tests that drive the plugin through real runtimes' libraries."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
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


@pytest.fixture(scope="module", params=["venv", "built"])
def cni_executable(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Runs a module's tests against the virtualenv's `pyflannel`, then against the
    PyInstaller build, started as the DaemonSet installs it: through a symlink in another
    directory (CNI_PATH) to the executable beside its _internal/."""
    with pytest.MonkeyPatch.context() as mp:
        if request.param == "venv":
            mp.delenv("PYFLANNEL_CNI_BIN", raising=False)
        else:
            link = tmp_path_factory.mktemp("cni-bin") / "pyflannel"
            link.symlink_to(request.getfixturevalue("built")["pyflannel"])
            mp.setenv("PYFLANNEL_CNI_BIN", str(link))
        yield request.param


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A chain headed by the reference plugins runs no pyflannel: once (venv) is enough."""
    def redundant(item: pytest.Item) -> bool:
        params = item.callspec.params if hasattr(item, "callspec") else {}
        return params.get("cni_executable") == "built" and params.get("main_plugin") == "reference"
    drop = [item for item in items if redundant(item)]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if not redundant(item)]
