"""End to end with what ships: the PyInstaller builds of flanneld and of the CNI plugin,
each started through a symlink as the image and the DaemonSet's installer lay them out."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.cluster import Cluster
from lab.plugin import ping

pytestmark = pytest.mark.integration


def test_built_flanneld_and_plugin_carry_pods_across_nodes(built: dict[str, Path],
                                                           tmp_path: Path, monkeypatch) -> None:
    for name, var in (("pyflannel", "PYFLANNEL_CNI_BIN"), ("flanneld", "PYFLANNEL_FLANNELD_BIN")):
        link = tmp_path / name
        link.symlink_to(built[name])
        monkeypatch.setenv(var, str(link))
    with Cluster(nodes=2, underlay=89) as c:
        for node in c.nodes:
            assert node.proc is not None
            assert Path(f"/proc/{node.proc.pid}/exe").resolve() == built["flanneld"].resolve()
        a, b = (c.add_pod(node) for node in c.nodes)
        assert a.ip != b.ip and c.nodes[0].subnet() != c.nodes[1].subnet()
        assert ping(a.netns, b.ip) and ping(b.netns, a.ip), "pod to pod across nodes"
