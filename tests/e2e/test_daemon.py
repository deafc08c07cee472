"""flanneld's own behaviour on one or two nodes with a real etcd: waiting for the network
config, writing it from --net-config-path, refusing a bad one, the iptables chains,
/healthz while etcd is away, what it puts back when someone deletes flannel0 or the
subnet file, and the data plane's offloads, on and off."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from lab.cluster import HEALTHZ_PORT, Cluster, Node, http_get
from lab.netns import run
from lab.plugin import ping

from .test_cluster import tcp_transfer, wait_for

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


# -- flannel0 and the subnet file deleted under a running daemon ---------------------------

@pytest.fixture(scope="module")
def pair():
    """Two nodes with a pod each, shared by the tests below; each leaves it working."""
    with Cluster(nodes=2, network="10.243.0.0/16", underlay=92) as c:
        for node in c.nodes:
            c.add_pod(node)
        yield c


def cross_pings(c: Cluster) -> bool:
    a, b = (n.pods[0] for n in c.nodes)
    return ping(a.netns, b.ip, count=1) and ping(b.netns, a.ip, count=1)


def tun(node: Node) -> tuple:
    """flannel0 as the kernel has it: kind, MTU, addresses, routes."""
    link = json.loads(run("ip", "-j", "-d", "addr", "show", "flannel0",
                          netns=node.netns).stdout)[0]
    routes = run("ip", "-4", "route", "show", "dev", "flannel0", netns=node.netns).stdout
    return (link["linkinfo"]["info_kind"], link["mtu"],
            [(a["local"], a["prefixlen"]) for a in link["addr_info"]], routes.split()[:1])


def occupy_flannel0(node: Node) -> None:
    """`ip link del flannel0` and, at once, another device by that name (a bridge: the
    kernel the tests run on may lack the dummy driver). Again if flanneld wins the race."""
    for _ in range(20):
        run("ip", "-force", "-batch", "-", netns=node.netns, check=False,
            input="link del flannel0\nlink add flannel0 type bridge\n")
        kind = run("ip", "-d", "link", "show", "flannel0", netns=node.netns, check=False)
        if " bridge " in kind.stdout:
            return
    raise AssertionError("could not put a bridge named flannel0 in place of the tun")


def test_deleted_flannel0_is_recreated_and_traffic_resumes(pair: Cluster) -> None:
    node = pair.nodes[0]
    expected = tun(node)
    assert expected[0] == "tun" and cross_pings(pair)
    run("ip", "link", "del", "flannel0", netns=node.netns)
    assert wait_for(lambda: cross_pings(pair), timeout=5, interval=0.1), node.log()[-2000:]
    assert tun(node) == expected
    assert node.healthz() == 200
    gateway = node.subnet().split("/")[0]
    address = gateway.rsplit(".", 1)[0] + ".0"
    assert "WARNING flanneld.backends.udp: tun device flannel0 vanished" in node.log()
    assert (f"INFO flanneld.backends.udp: re-created flannel0: {address}/32 mtu 1472, "
            f"route 10.243.0.0/16; forwarding again") in node.log()
    metrics = node.metrics()
    assert metrics["flanneld_udp_tun_recreated_total"] == 1 and metrics["flanneld_tun_up"] == 1
    assert node.proc is not None and node.proc.poll() is None


def test_flannel0_taken_by_another_device_is_503_until_the_name_is_free(pair: Cluster) -> None:
    node = pair.nodes[0]
    expected = tun(node)
    occupy_flannel0(node)
    try:
        taken = (503, "flanneld is not ready: tun device flannel0 is gone; re-creating it: "
                 "cannot open tun device flannel0: a device of another kind already has "
                 "that name\n")
        assert wait_for(lambda: http_get(node.netns, HEALTHZ_PORT, "/healthz") == taken,
                        timeout=5), http_get(node.netns, HEALTHZ_PORT, "/healthz")
        assert node.metrics()["flanneld_tun_up"] == 0
        assert "a device of another kind already has that name; trying again every 1 s" \
            in node.log()
        assert not cross_pings(pair)
    finally:
        run("ip", "link", "del", "flannel0", netns=node.netns, check=False)
    assert wait_for(lambda: node.healthz() == 200, timeout=5), node.log()[-2000:]
    assert tun(node) == expected
    assert wait_for(lambda: cross_pings(pair), timeout=5, interval=0.1)
    assert node.metrics()["flanneld_tun_up"] == 1
    assert node.proc is not None and node.proc.poll() is None


def test_a_deleted_subnet_file_is_written_again(pair: Cluster) -> None:
    node = pair.nodes[1]
    text = node.subnet_file.read_text()
    node.subnet_file.unlink()
    assert wait_for(node.subnet_file.exists, timeout=2, interval=0.05)
    assert node.subnet_file.read_text() == text
    assert f"WARNING flanneld: the subnet file {node.subnet_file} was missing; wrote it " \
        "again" in node.log()
    pod = pair.add_pod(node)                      # the plugin finds it again
    assert ping(pair.nodes[0].pods[0].netns, pod.ip, count=1)
    pair.del_pod(pod)
    assert node.healthz() == 200


# -- the offloads -------------------------------------------------------------------------

OFFLOADS = ("tun_vnet_hdr", "tun_tso", "udp_gso", "udp_gro")


def test_offloads_are_on_counted_and_a_node_without_them_still_talks(pair: Cluster) -> None:
    a, b = pair.nodes
    pod_a, pod_b = a.pods[0], b.pods[0]
    assert "offloads: tun_vnet_hdr, tun_tso, udp_gso, udp_gro" in a.log()
    assert tcp_transfer(pod_a, pod_b)
    sent, got = a.metrics(), b.metrics()
    assert all(sent[f"flanneld_udp_offload_{f}"] == 1 for f in OFFLOADS)
    assert sent["flanneld_udp_tx_tso_packets_total"] > 0
    assert sent["flanneld_udp_tx_segments_total"] > sent["flanneld_udp_tx_tso_packets_total"]
    assert sent["flanneld_udp_tx_gso_sends_total"] > 0
    assert got["flanneld_udp_rx_coalesced_packets_total"] > 0
    pair.stop_node(b)
    b.extra_args = ("--udp-offload=false",)
    try:
        pair.start_node(b)
        pair.wait_ready(b)
        assert "offloads: off (turned off by configuration)" in b.log()
        assert all(b.metrics()[f"flanneld_udp_offload_{f}"] == 0 for f in OFFLOADS)
        assert tcp_transfer(pod_a, pod_b) and tcp_transfer(pod_b, pod_a)
        assert b.metrics()["flanneld_udp_tx_tso_packets_total"] == 0
    finally:
        pair.stop_node(b)
        b.extra_args = ()
        pair.start_node(b)
        pair.wait_ready(b)
    assert cross_pings(pair)
