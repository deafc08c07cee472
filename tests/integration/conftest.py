"""The plugin's integration tests run four times: against the virtualenv's executable and
the build, each doing its calls itself (cold) and relaying them to a worker served by the
same executable (warm, `pyflannel --serve`, as flanneld runs it). The etcd fixtures (a
real etcd in a namespace, registries talking to it) come from etcd_worker.py."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .etcd_worker import etcd, make_etcd, open_registry, prefix, registry  # noqa: F401


@pytest.fixture(scope="module", params=["venv", "built", "venv-warm", "built-warm"])
def cni_executable(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Runs a module's tests against the virtualenv's `pyflannel`, then against the
    PyInstaller build, started as the DaemonSet installs it: through a symlink in another
    directory (CNI_PATH) to the executable beside its _internal/. The -warm variants also
    run that executable's `--serve` worker for the module and point PYFLANNEL_SOCKET at
    it; its log must show no failed worker."""
    kind, _, path = request.param.partition("-")
    with pytest.MonkeyPatch.context() as mp:
        if kind == "venv":
            mp.delenv("PYFLANNEL_CNI_BIN", raising=False)
        else:
            link = tmp_path_factory.mktemp("cni-bin") / "pyflannel"
            link.symlink_to(request.getfixturevalue("built")["pyflannel"])
            mp.setenv("PYFLANNEL_CNI_BIN", str(link))
        if path != "warm":
            yield request.param
            return
        from lab.plugin import plugin_binary

        with serving(plugin_binary(), tmp_path_factory.mktemp("cni-sock")) as socket:
            mp.setenv("PYFLANNEL_SOCKET", str(socket))
            yield request.param


class serving:
    """`pyflannel --serve` on a socket in `directory`, stopped on exit; a worker that
    failed (an exception, not a CNI error) fails the module."""

    def __init__(self, plugin: str, directory: Path, new_session: bool = False) -> None:
        self.socket = directory / "cni.sock"
        self.log = directory / "serve.log"
        self.cmd = [plugin, "--serve", str(self.socket)]
        self.new_session = new_session     # its own process group, workers included

    def __enter__(self) -> Path:
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT,
                                         start_new_session=self.new_session)
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"the CNI worker did not start: {self.log.read_text()}")
            time.sleep(0.05)
        return self.socket

    def kill(self) -> None:
        """Gone for good (a test that killed it): no log check."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        failed = [line for line in self.log.read_text().splitlines() if "failed" in line]
        assert not failed, failed


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A chain headed by the reference plugins runs no pyflannel: once (venv) is enough. A
    module that sets EXECUTABLES runs only against those (the slow kill test)."""
    def redundant(item: pytest.Item) -> bool:
        params = item.callspec.params if hasattr(item, "callspec") else {}
        executable = params.get("cni_executable")
        if executable not in getattr(item.module, "EXECUTABLES", (executable,)):
            return True
        return executable != "venv" and params.get("main_plugin") == "reference"
    drop = [item for item in items if redundant(item)]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if not redundant(item)]
