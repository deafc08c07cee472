"""End to end with what ships: the PyInstaller builds of flanneld and of the CNI plugin,
each started through a symlink as the image and the DaemonSet's installer lay them out."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.cluster import Cluster
from lab.plugin import ping

pytestmark = pytest.mark.integration


def use_built(built: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, var in (("pyflannel", "PYFLANNEL_CNI_BIN"), ("flanneld", "PYFLANNEL_FLANNELD_BIN")):
        link = tmp_path / name
        link.symlink_to(built[name])
        monkeypatch.setenv(var, str(link))


def test_built_flanneld_and_plugin_carry_pods_across_nodes(built: dict[str, Path],
                                                           tmp_path: Path, monkeypatch) -> None:
    use_built(built, tmp_path, monkeypatch)
    with Cluster(nodes=2, underlay=89) as c:
        for node in c.nodes:
            assert node.proc is not None
            assert Path(f"/proc/{node.proc.pid}/exe").resolve() == built["flanneld"].resolve()
        a, b = (c.add_pod(node) for node in c.nodes)
        assert a.ip != b.ip and c.nodes[0].subnet() != c.nodes[1].subnet()
        assert ping(a.netns, b.ip) and ping(b.netns, a.ip), "pod to pod across nodes"


def test_the_built_flanneld_runs_an_encrypted_network(built: dict[str, Path], tmp_path: Path,
                                                      monkeypatch) -> None:
    """cryptography (OpenSSL's AEADs, X25519, HKDF) is in the build and works."""
    use_built(built, tmp_path, monkeypatch)
    with Cluster(nodes=2, underlay=98, backend={"Type": "udp", "Encryption": "aes-256-gcm"}) as c:
        a, b = (c.add_pod(node) for node in c.nodes)
        assert ping(a.netns, b.ip) and ping(b.netns, a.ip), "pod to pod across nodes"
        for node in c.nodes:
            assert "encrypting with aes-256-gcm" in node.log()
            metrics = node.metrics()
            assert metrics["flanneld_udp_peers_without_key"] == 0
            assert metrics['flanneld_udp_dropped_total{reason="sealed_forged"}'] == 0
