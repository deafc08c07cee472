"""End to end: a real etcd and three nodes, each running the installed `flanneld`, with
pods added through the installed CNI executable; everything in namespaces of its own.

The cluster is shared by the tests of this module, which run in file order: the
disruptive ones (kill -9, etcd outage) come last and leave the cluster working.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta

import pytest

from lab.cluster import Cluster, Node, Pod
from lab.netns import run
from lab.plugin import ping
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

NETWORK = "10.244.0.0/16"


@pytest.fixture(scope="module")
def cluster():
    with Cluster(nodes=3, network=NETWORK, underlay=77) as c:
        for node in c.nodes:
            c.add_pod(node)
        yield c


def pairs(cluster: Cluster) -> list[tuple[Pod, Pod]]:
    pods = [p for n in cluster.nodes for p in n.pods]
    return [(a, b) for a in pods for b in pods if a.node is not b.node]


def all_reachable(cluster: Cluster) -> list[str]:
    """The cross-node pod pairs that do not answer ping (empty when all do)."""
    return [f"{a.ip}->{b.ip}" for a, b in pairs(cluster) if not ping(a.netns, b.ip, count=1)]


def subnet_of(node: Node) -> str:
    gateway, prefix = node.subnet().split("/")
    return f"{gateway.rsplit('.', 1)[0]}.0/{prefix}"


def etcd_leases(cluster: Cluster) -> dict[str, dict]:
    """Key -> {"value": text, "lease": id} for every key under <prefix>/subnets/."""
    out = json.loads(cluster.etcd.etcdctl("get", "--prefix", f"{cluster.prefix}/subnets/",
                                          "-w", "json"))
    return {base64.b64decode(kv["key"]).decode():
            {"value": base64.b64decode(kv["value"]).decode(), "lease": kv.get("lease", 0)}
            for kv in out.get("kvs", [])}


SERVER = """
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5301)); s.listen(1); s.settimeout(30)
print("ready", flush=True)
c, _ = s.accept(); c.settimeout(30); h = hashlib.sha256(); n = 0
while chunk := c.recv(1 << 16):
    h.update(chunk); n += len(chunk)
print(n, h.hexdigest(), flush=True)
"""
CLIENT = """
import hashlib, os, socket, sys
data = os.urandom(int(sys.argv[2]))
c = socket.create_connection((sys.argv[1], 5301), timeout=30); c.sendall(data); c.close()
print(len(data), hashlib.sha256(data).hexdigest())
"""


def logged_at(node: Node, text: str) -> datetime:
    """When the node's flanneld logged the last line containing `text`."""
    line = [x for x in node.log().splitlines() if text in x][-1]
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


def tcp_transfer(src: Pod, dst: Pod, megabytes: int = 8) -> bool:
    """Send random bytes from src to dst over TCP; True when dst got exactly them."""
    server = subprocess.Popen(["ip", "netns", "exec", dst.netns, sys.executable, "-c", SERVER],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        sent = run(sys.executable, "-c", CLIENT, dst.ip, str(megabytes << 20),
                   netns=src.netns, timeout=60).stdout.strip()
        received, _ = server.communicate(timeout=30)
        return received.strip() == sent
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_every_pod_reaches_every_pod_on_other_nodes(cluster: Cluster) -> None:
    assert len({subnet_of(n) for n in cluster.nodes}) == 3
    assert all_reachable(cluster) == []


def test_a_tcp_transfer_crosses_nodes(cluster: Cluster) -> None:
    a, b = cluster.nodes[0].pods[0], cluster.nodes[2].pods[0]
    assert tcp_transfer(a, b)


def test_etcd_keys_and_values_are_flannels(cluster: Cluster) -> None:
    stored = etcd_leases(cluster)
    expected = {f"{cluster.prefix}/subnets/{subnet_of(n).replace('/', '-')}":
                f'{{"PublicIP":"{n.underlay_ip}","PublicIPv6":null}}' for n in cluster.nodes}
    assert {k: v["value"] for k, v in stored.items()} == expected
    for entry in stored.values():
        ttl = cluster.etcd.etcdctl("lease", "timetolive", format(int(entry["lease"]), "x"))
        assert "granted with TTL(86400s)" in ttl


def test_subnet_file_and_tun_device(cluster: Cluster) -> None:
    node = cluster.nodes[0]
    subnet = subnet_of(node)
    gateway = node.subnet()
    assert node.subnet_file.read_text() == (f"FLANNEL_NETWORK={NETWORK}\n"
                                            f"FLANNEL_SUBNET={gateway}\n"
                                            "FLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n")
    link = json.loads(run("ip", "-j", "-d", "addr", "show", "flannel0",
                          netns=node.netns).stdout)[0]
    assert link["mtu"] == 1472 and link["linkinfo"]["info_kind"] == "tun"
    assert [(a["local"], a["prefixlen"]) for a in link["addr_info"]] == \
        [(subnet.split("/")[0], 32)]
    routes = run("ip", "-4", "route", "show", "dev", "flannel0", netns=node.netns).stdout
    assert routes.split()[0] == NETWORK


def test_healthz_and_peers(cluster: Cluster) -> None:
    for node in cluster.nodes:
        assert node.healthz() == 200
        others = {subnet_of(n): n.underlay_ip for n in cluster.nodes if n is not node}
        assert {p["subnet"]: p["public_ip"] for p in node.peers()} == others


def test_a_forged_datagram_from_an_unknown_address_is_dropped_and_counted(
        cluster: Cluster) -> None:
    node = cluster.nodes[0]
    key = 'flanneld_udp_dropped_total{reason="unknown_peer"}'
    before = node.metrics().get(key, 0)
    pod = node.pods[0]
    # A well-formed ICMP echo to a pod, sent from the hub (on the underlay, not a node).
    script = ("import socket, struct\n"
              "def csum(b):\n"
              "    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))\n"
              "    s = (s >> 16) + (s & 0xffff); s += s >> 16\n"
              "    return ~s & 0xffff\n"
              "icmp = struct.pack('!BBHHH', 8, 0, 0, 1, 1)\n"
              "icmp = icmp[:2] + struct.pack('!H', csum(icmp)) + icmp[4:]\n"
              f"src, dst = socket.inet_aton('10.244.250.9'), socket.inet_aton('{pod.ip}')\n"
              "h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 28, 1, 0, 64, 1, 0, src, dst)\n"
              "h = h[:10] + struct.pack('!H', csum(h)) + h[12:]\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              f"for _ in range(3): s.sendto(h + icmp, ('{node.underlay_ip}', 8285))\n")
    run(sys.executable, "-c", script, netns=cluster.hub)
    assert wait_for(lambda: node.metrics().get(key, 0) >= before + 3, timeout=5)
    assert node.healthz() == 200 and all_reachable(cluster) == []


def test_kill_9_and_restart_keeps_the_subnet_and_traffic_resumes(cluster: Cluster) -> None:
    node = cluster.nodes[1]
    subnet = subnet_of(node)
    assert cluster.stop_node(node, signal.SIGKILL) == -signal.SIGKILL
    cluster.start_node(node)
    cluster.wait_ready(node)
    assert subnet_of(node) == subnet
    assert wait_for(lambda: all_reachable(cluster) == [], timeout=10)
    assert "reusing lease" in node.log()


def test_etcd_outage_keeps_traffic_flowing_and_daemons_resync(cluster: Cluster) -> None:
    cluster.etcd.stop()
    try:
        time.sleep(1.5)  # the daemons notice the watch is gone
        assert all_reachable(cluster) == []
        assert all(n.healthz() == 200 for n in cluster.nodes)
        a, b = cluster.nodes[0].pods[0], cluster.nodes[1].pods[0]
        assert tcp_transfer(a, b, megabytes=2)
    finally:
        cluster.etcd.start()
    for node in cluster.nodes:
        assert wait_for(lambda n=node: "etcd is back" in n.log(), timeout=15), node.log()
    # Watching again: a new peer's lease reaches every node within a second.
    cluster.etcd.etcdctl("put", f"{cluster.prefix}/subnets/10.244.200.0-24",
                         '{"PublicIP":"192.168.77.99","PublicIPv6":null}')
    put_at = datetime.now()
    for node in cluster.nodes:
        assert wait_for(lambda n=node: any(p["subnet"] == "10.244.200.0/24"
                                           for p in n.peers()), timeout=5), node.log()[-2000:]
        assert logged_at(node, "peer 10.244.200.0/24 added") - put_at < timedelta(seconds=1)
    cluster.etcd.etcdctl("del", f"{cluster.prefix}/subnets/10.244.200.0-24")
    assert all_reachable(cluster) == []
    for node in cluster.nodes:
        assert node.proc is not None and node.proc.poll() is None


@pytest.fixture
def short_ttl_cluster():
    with Cluster(nodes=2, network="10.245.0.0/16", lease_ttl=4, underlay=78) as c:
        for node in c.nodes:
            c.add_pod(node)
        yield c


def test_short_leases_renew_and_an_expired_lease_removes_the_route(short_ttl_cluster) -> None:
    c = short_ttl_cluster
    a, b = c.nodes
    time.sleep(6)  # longer than the TTL: renewals keep both leases
    assert wait_for(lambda: ping(a.pods[0].netns, b.pods[0].ip, count=1), timeout=3)
    assert "renewed lease" in a.log()
    gone = subnet_of(b)
    assert c.stop_node(b) == 0  # SIGTERM keeps the lease ... until it expires
    assert any(p["subnet"] == gone for p in a.peers())
    assert wait_for(lambda: all(p["subnet"] != gone for p in a.peers()), timeout=10)
    unreachable = run("ping", "-c", "1", "-W", "2", b.pods[0].ip, netns=a.pods[0].netns,
                      check=False)
    assert "Destination Net Unreachable" in unreachable.stdout
    # Restarted after expiry, b takes the subnet again (free, and in its subnet file).
    c.start_node(b)
    c.wait_ready(b)
    assert subnet_of(b) == gone
    assert wait_for(lambda: ping(a.pods[0].netns, b.pods[0].ip, count=1), timeout=10)


def test_own_lease_deleted_is_recreated_and_taken_lease_exits(short_ttl_cluster) -> None:
    c = short_ttl_cluster
    a, b = c.nodes
    key = f"{c.prefix}/subnets/{subnet_of(a).replace('/', '-')}"
    c.etcd.etcdctl("del", key)
    assert wait_for(lambda: key in etcd_leases(c), timeout=5)
    assert "re-created it" in a.log()
    assert etcd_leases(c)[key]["value"] == f'{{"PublicIP":"{a.underlay_ip}","PublicIPv6":null}}'
    # Now another node's lease replaces it: the daemon must give the subnet up and exit.
    c.etcd.etcdctl("put", key, '{"PublicIP":"192.168.78.99","PublicIPv6":null}')
    assert a.proc is not None
    assert a.proc.wait(10) == 1
    assert "now belongs to 192.168.78.99" in a.log()
