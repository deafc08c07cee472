"""The plugin's integration tests run twice: against the virtualenv's executable and the
build. The etcd fixtures (a real etcd in a namespace, registries talking to it) come from
etcd_worker.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .etcd_worker import etcd, make_etcd, open_registry, prefix, registry  # noqa: F401


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
    """A chain headed by the reference plugins runs no pyflannel: once (venv) is enough. A
    module that sets EXECUTABLES runs only against those (the slow kill test)."""
    def redundant(item: pytest.Item) -> bool:
        params = item.callspec.params if hasattr(item, "callspec") else {}
        executable = params.get("cni_executable")
        if executable not in getattr(item.module, "EXECUTABLES", (executable,)):
            return True
        return executable == "built" and params.get("main_plugin") == "reference"
    drop = [item for item in items if redundant(item)]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if not redundant(item)]
