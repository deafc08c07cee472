"""Fixtures shared by every test: namespaces made per test and always removed."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.netns import Namespaces, unique
from lab.plugin import subnet_env_text
from tests.support.cnitool import build_cnitool


def pytest_collection_modifyitems(config, items):
    needs_root = [i for i in items if i.get_closest_marker("integration")]
    if needs_root and os.geteuid() != 0:
        skip = pytest.mark.skip(reason="integration tests need root (network namespaces)")
        for item in needs_root:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def built() -> dict[str, Path]:
    """The PyInstaller executables by program name, built first unless build/dist is up
    to date (`python -m build.freeze`); a failed build fails the tests that need them."""
    from build import freeze

    try:
        freeze.ensure()
    except freeze.BuildError as e:
        pytest.fail(str(e), pytrace=False)
    return {name: freeze.executable(name) for name in freeze.PROGRAMS}


@pytest.fixture(scope="session")
def cnitool() -> Path:
    """Our libcni-based cnitool, built once per session; a failed build fails the tests."""
    try:
        return build_cnitool()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def namespaces():
    ns = Namespaces()
    try:
        yield ns
    finally:
        ns.cleanup()


@dataclass
class Node:
    """A node: its own netns (the plugin runs there), subnet file and data dir."""

    netns: str
    dir: Path
    network: str = "10.244.0.0/16"
    subnet: str = "10.244.1.1/24"
    name: str = field(default_factory=lambda: unique("net"))

    @property
    def subnet_file(self) -> Path:
        return self.dir / "subnet.env"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def write_subnet_file(self, **kw) -> None:
        kw.setdefault("network", self.network)
        kw.setdefault("subnet", self.subnet)
        self.subnet_file.write_text(subnet_env_text(**kw))

    def conf(self, cni_version: str = "1.1.0", **extra) -> dict:
        conf = {"cniVersion": cni_version, "name": self.name, "type": "pyflannel",
                "subnetFile": str(self.subnet_file), "dataDir": str(self.data_dir)}
        conf.update(extra)
        return conf


@pytest.fixture
def node(namespaces, tmp_path) -> Node:
    n = Node(netns=namespaces.make("pfnode"), dir=tmp_path)
    n.write_subnet_file()
    return n
