"""flanneld's own behaviour on one or two nodes with a real etcd: waiting for the network
config, writing it from --net-config-path, refusing a bad one, the iptables chains, and
/healthz while etcd is away."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from lab.cluster import Cluster
from lab.netns import run

from .test_cluster import wait_for

pytestmark = pytest.mark.integration


def test_waits_for_the_network_config_then_starts() -> None:
    with Cluster(nodes=1, write_config=False, wait=False, underlay=81) as c:
        node = c.nodes[0]
        assert wait_for(lambda: "waiting for it" in node.log(), timeout=10), node.log()
        time.sleep(1.5)
        assert node.proc is not None and node.proc.poll() is None
        assert not node.subnet_file.exists()
        c.put_config({"Network": "10.246.0.0/16"})
        c.wait_ready(node)
        assert node.subnet().startswith("10.246.")


def test_the_config_file_seeds_etcd_once_and_never_overwrites_it(tmp_path: Path) -> None:
    seed = tmp_path / "net-conf.json"
    seed.write_text('{\n  "Network": "10.248.0.0/16",\n  "Backend": {"Type": "udp"}\n}\n')
    with Cluster(nodes=2, write_config=False, underlay=87,
                 extra_args=(f"--net-config-path={seed}",)) as c:
        key = f"{c.prefix}/config"
        [kv] = json.loads(c.etcd.etcdctl("get", key, "-w", "json"))["kvs"]
        assert kv["version"] == 1  # both nodes started together; one wrote
        assert c.etcd.etcdctl("get", key, "--print-value-only") == seed.read_text() + "\n"
        assert sum("wrote the one from" in n.log() for n in c.nodes) == 1
        assert all(n.subnet().startswith("10.248.") for n in c.nodes)

        node = c.nodes[1]
        other = tmp_path / "other.json"
        other.write_text('{"Network": "10.249.0.0/16"}')
        c.stop_node(node)
        node.extra_args = (f"--net-config-path={other}",)
        c.start_node(node)
        c.wait_ready(node)
        assert node.subnet().startswith("10.248.")
        assert "differs from" in node.log() and "10.248.0.0/16 != 10.249.0.0/16" in node.log()

        bad = tmp_path / "bad.json"
        bad.write_text('{"Network": "10.250.0.0/16", "Backend": {"Type": "vxlan"}}')
        c.stop_node(node)
        node.extra_args = (f"--net-config-path={bad}",)
        c.start_node(node)
        assert node.proc is not None and node.proc.wait(20) == 2
        assert f"flanneld: error: {bad}: invalid network config" in node.log()
        assert json.loads(c.etcd.etcdctl("get", key, "-w", "json"))["kvs"][0]["version"] == 1


@pytest.mark.parametrize("config, message", [
    ('{"Network": "10.244.0.0/30"}', "/28"),
    ('{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}', "vxlan"),
    ("not json", "JSON"),
])
def test_a_bad_network_config_exits_with_a_clear_message(config: str, message: str) -> None:
    with Cluster(nodes=1, write_config=False, wait=False, underlay=82) as c:
        c.etcd.etcdctl("put", f"{c.prefix}/config", config)
        node = c.nodes[0]
        assert node.proc is not None and node.proc.wait(20) == 1
        assert message in node.log(), node.log()
        assert not node.subnet_file.exists()


def chain(netns: str, table: str, name: str) -> list[str]:
    listing = run("iptables", "-t", table, "-S", netns=netns).stdout.splitlines()
    return [line for line in listing if name in line]


def test_masquerade_and_forward_rules_are_installed_kept_and_removed() -> None:
    args = ("--ip-masq", "--iptables-resync=1")
    with Cluster(nodes=1, extra_args=args, underlay=83) as c:
        node = c.nodes[0]
        assert node.subnet_file.read_text().endswith("FLANNEL_IPMASQ=true\n")
        masq = chain(node.netns, "nat", "FLANNEL-POSTRTG")
        assert "-N FLANNEL-POSTRTG" in masq and len(masq) == 1 + 1 + 6
        assert any(line.startswith("-A POSTROUTING") for line in masq)
        fwd = chain(node.netns, "filter", "FLANNEL-FWD")
        assert len(fwd) == 1 + 1 + 2
        # Someone flushes our chain and removes the forward jump: both come back.
        run("iptables", "-t", "nat", "-F", "FLANNEL-POSTRTG", netns=node.netns)
        run("iptables", "-t", "filter", "-D", "FORWARD", "-m", "comment", "--comment",
            "flanneld forward", "-j", "FLANNEL-FWD", netns=node.netns)
        assert wait_for(lambda: chain(node.netns, "nat", "FLANNEL-POSTRTG") == masq
                        and chain(node.netns, "filter", "FLANNEL-FWD") == fwd, timeout=5)
        assert "had been changed; restored it" in node.log()
        # Restarting does not duplicate anything.
        assert c.stop_node(node, signal.SIGKILL) == -signal.SIGKILL
        c.start_node(node)
        c.wait_ready(node)
        assert chain(node.netns, "nat", "FLANNEL-POSTRTG") == masq
        assert c.stop_node(node) == 0
        assert chain(node.netns, "nat", "FLANNEL-POSTRTG") == []
        assert chain(node.netns, "filter", "FLANNEL-FWD") == []


def test_healthz_turns_503_when_the_lease_runs_out_with_etcd_away() -> None:
    with Cluster(nodes=1, lease_ttl=3, underlay=84) as c:
        node = c.nodes[0]
        c.etcd.stop()
        try:
            assert wait_for(lambda: node.healthz() == 503, timeout=10)
            assert "error renewing lease" in node.log()
        finally:
            c.etcd.start()
        assert wait_for(lambda: node.healthz() == 200, timeout=15), node.log()[-2000:]
        assert node.proc is not None and node.proc.poll() is None


def test_a_full_network_exits_with_a_clear_message() -> None:
    with Cluster(nodes=1, write_config=False, wait=False, underlay=85) as c:
        c.put_config({"Network": "10.247.0.0/22", "SubnetLen": 24})  # 10.247.1-3.0/24
        for i in (1, 2, 3):
            c.etcd.etcdctl("put", f"{c.prefix}/subnets/10.247.{i}.0-24",
                           f'{{"PublicIP":"192.168.85.{100 + i}","PublicIPv6":null}}')
        node = c.nodes[0]
        assert node.proc is not None and node.proc.wait(20) == 1
        assert "out of subnets" in node.log(), node.log()


def test_a_dead_first_etcd_endpoint_fails_over_to_the_next() -> None:
    endpoints = "--etcd-endpoints=http://192.168.86.1:2999,http://192.168.86.1:2379"
    with Cluster(nodes=1, extra_args=(endpoints,), underlay=86) as c:
        node = c.nodes[0]
        assert node.healthz() == 200
        assert len(etcd_keys(c)) == 1


def etcd_keys(c: Cluster) -> list[str]:
    return c.etcd.etcdctl("get", "--prefix", "--keys-only", f"{c.prefix}/subnets/").split()
