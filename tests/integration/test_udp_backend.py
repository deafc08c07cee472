"""The udp backend against the real kernel: two nodes on an underlay switch, a pod on each.

    pod A 10.244.1.2 --veth-- node A (flannel0 10.244.1.0/32) --+
                                   192.168.77.1                 |  switch (bridge)
    pod B 10.244.2.2 --veth-- node B (flannel0 10.244.2.0/32) --+-- stranger 192.168.77.3
                                   192.168.77.2

Each node's backend runs in this process, created while the test thread is inside the
node's namespace (its fds stay there). Traffic is bounded by timeouts throughout.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from ipaddress import IPv4Address, IPv4Network

import pytest

from flanneld.backends.udp import DROP_REASONS, UdpBackend
from flanneld.core.errors import FlannelError
from flanneld.core.lease import Lease
from flanneld.core.packet import internet_checksum
from flanneld.core.routes import Routes
from flanneld.io.tun import open_tun
from lab.netns import Namespaces, inside, run
from tests.support import waiting

from .underlay import tcp_transfer

# What these tests wait for happens within milliseconds.
wait_for = partial(waiting.wait_for, timeout=3.0, interval=0.01)

pytestmark = pytest.mark.integration

NETWORK = IPv4Network("10.244.0.0/16")
PORT = 8285
UNDERLAY_MTU = 1500


@dataclass
class Node:
    netns: str
    path: str
    pod: str
    pod_path: str
    underlay: IPv4Address
    subnet: IPv4Network
    backend: UdpBackend

    @property
    def pod_ip(self) -> IPv4Address:
        return self.subnet.network_address + 2

    def lease(self) -> Lease:
        return Lease(self.subnet, self.underlay)


@dataclass
class Cluster:
    a: Node
    b: Node
    stranger_path: str
    ns: Namespaces


def ip(*args: str, netns: str) -> None:
    run("ip", "-n", netns, *args)


def build(ns: Namespaces) -> tuple[str, list[tuple[str, str, IPv4Address, IPv4Network]]]:
    """The namespaces and links; returns the stranger and (node, pod, underlay, subnet)s."""
    switch, stranger = ns.make("pfusw"), ns.make("pfuxx")
    ip("link", "add", "br0", "type", "bridge", netns=switch)
    ip("link", "set", "br0", "up", netns=switch)
    made = []
    for i, host in ((1, ns.make("pfuna")), (2, ns.make("pfunb")), (3, stranger)):
        ip("link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", host,
           netns=switch)
        ip("link", "set", f"p{i}", "master", "br0", "up", netns=switch)
        ip("addr", "add", f"192.168.77.{i}/24", "dev", "eth0", netns=host)
        ip("link", "set", "eth0", "up", netns=host)
        if host == stranger:
            continue
        pod, subnet = ns.make("pfupod"), IPv4Network(f"10.244.{i}.0/24")
        gw, pod_ip = subnet.network_address + 1, subnet.network_address + 2
        run("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=host)
        mtu = str(UNDERLAY_MTU - UdpBackend.OVERHEAD)
        ip("link", "add", "vpod", "mtu", mtu, "type", "veth", "peer", "name", "eth0",
           "mtu", mtu, "netns", pod, netns=host)
        ip("addr", "add", f"{gw}/24", "dev", "vpod", netns=host)
        ip("link", "set", "vpod", "up", netns=host)
        ip("addr", "add", f"{pod_ip}/24", "dev", "eth0", netns=pod)
        ip("link", "set", "eth0", "up", netns=pod)
        ip("route", "add", "default", "via", str(gw), netns=pod)
        made.append((host, pod, IPv4Address(f"192.168.77.{i}"), subnet))
    return stranger, made


@pytest.fixture(scope="module", params=[True, False], ids=["offload", "plain"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Every test runs against both data paths: offloads on (the default) and off."""
    ns = Namespaces()
    backends: list[UdpBackend] = []
    try:
        stranger, made = build(ns)
        nodes = []
        for host, pod, underlay, subnet in made:
            backend = UdpBackend(iface_addr=underlay, iface_mtu=UNDERLAY_MTU, port=PORT,
                                 network=NETWORK, subnet=subnet, offload=request.param)
            with inside(ns.path(host)):
                backend.start()
            backends.append(backend)
            nodes.append(Node(host, ns.path(host), pod, ns.path(pod), underlay, subnet, backend))
        a, b = nodes
        a.backend.set_routes(Routes.build([b.lease()], PORT))
        b.backend.set_routes(Routes.build([a.lease()], PORT))
        yield Cluster(a, b, ns.path(stranger), ns)
    finally:
        try:
            for backend in backends:
                backend.stop()
        finally:
            ns.cleanup()


# --- helpers ------------------------------------------------------------------------------

def ipv4(src: IPv4Address, dst: IPv4Address, payload: bytes, *, ttl: int = 64,
         proto: int = socket.IPPROTO_UDP) -> bytearray:
    header = bytearray(struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(payload), 0x1234, 0, ttl,
                                   proto, 0, int(src), int(dst)))
    header[10:12] = internet_checksum(header).to_bytes(2, "big")
    return header + payload


def udp(src: IPv4Address, dst: IPv4Address, dport: int, data: bytes, **kw) -> bytearray:
    """An IPv4/UDP packet (UDP checksum 0: none, which IPv4 allows)."""
    return ipv4(src, dst, struct.pack("!HHHH", 40000, dport, 8 + len(data), 0) + data, **kw)


def delta(backend: UdpBackend, before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in backend.counters().items() if v != before.get(k)}


def events(backend: UdpBackend, before: dict[str, int]) -> dict[str, int]:
    """The drop and ICMP counts since `before`. Packet and byte counts are left out: a loop
    publishes them when it goes idle, so they can trail a delivery that a test just saw."""
    return {k: v for k, v in delta(backend, before).items() if not k.startswith(("tx_", "rx_"))}


def udp_socket(netns_path: str, bind: tuple[str, int], timeout: float = 2.0) -> socket.socket:
    with inside(netns_path):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    s.bind(bind)
    return s


def ping(netns: str, dst: str, *args: str) -> str:
    done = run("ping", "-n", "-c1", "-W2", *args, dst, netns=netns, check=False, timeout=10)
    return done.stdout + done.stderr


def ip_json(netns: str, *args: str) -> list[dict]:
    return json.loads(run("ip", "-j", "-n", netns, *args).stdout or "[]")


def tun_state(netns: str, name: str = "flannel0") -> tuple:
    """What the kernel says of the device: kind, MTU, up, addresses, routes."""
    (link,) = ip_json(netns, "-d", "addr", "show", "dev", name)
    routes = ip_json(netns, "route", "show", "dev", name)
    return (link["linkinfo"]["info_kind"], link["mtu"], "UP" in link["flags"],
            [(x["family"], x["local"], x["prefixlen"]) for x in link["addr_info"]],
            [(r["dst"], r.get("scope", "global")) for r in routes])


def occupy(netns: str, name: str) -> None:
    """Delete the tun `name` and put a bridge of that name in its place, so that the backend
    cannot make its tun again. Both in one `ip` process; again if the backend wins the race.
    (A bridge, not a dummy: the kernel the tests run on may lack the dummy driver.)"""
    for _ in range(20):
        run("ip", "-n", netns, "-force", "-batch", "-", check=False,
            input=f"link del {name}\nlink add {name} type bridge\n")
        links = [x for x in ip_json(netns, "-d", "link") if x["ifname"] == name]
        if links and links[0].get("linkinfo", {}).get("info_kind") == "bridge":
            return
    raise AssertionError(f"could not put a bridge named {name} in place of the tun")


# --- the tests ----------------------------------------------------------------------------

TUN_A = ("tun", UNDERLAY_MTU - 28, True, [("inet", "10.244.1.0", 32)],  # IPv6 off: no fe80
         [(str(NETWORK), "global")])


def test_tun_has_the_address_mtu_and_route(cluster: Cluster) -> None:
    a = cluster.a
    assert tun_state(a.netns) == TUN_A
    assert a.backend.mtu == 1472 and a.backend.alive() and cluster.b.backend.alive()


def test_counters_name_every_drop_reason(cluster: Cluster) -> None:
    counters = cluster.a.backend.counters()
    assert {f"drop_{r}" for r in DROP_REASONS} <= counters.keys()
    assert {"tx_packets", "rx_packets", "tx_bytes", "rx_bytes", "icmp_sent_net_unreach",
            "icmp_sent_time_exceeded"} <= counters.keys()
    assert all(isinstance(v, int) and v >= 0 for v in counters.values())
    assert counters["drop_not_ipv4"] == 0        # no IPv6 chatter from the kernel on the tun


def test_ping_between_pods_on_two_nodes(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    before_a, before_b = a.backend.counters(), b.backend.counters()
    out = run("ping", "-n", "-c3", "-i0.2", "-W2", str(b.pod_ip), netns=a.pod, timeout=15).stdout
    assert " 0% packet loss" in out
    # pod 64 -> node A forwards (63) -> the backend of node B (62) -> node B forwards (61)
    assert "ttl=61" in out
    assert wait_for(lambda: delta(a.backend, before_a).get("tx_packets", 0) >= 3
                    and delta(b.backend, before_b).get("rx_packets", 0) >= 3)


def test_tcp_transfer_between_pods(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    tcp_transfer(a.pod_path, b.pod_path, str(b.pod_ip), os.urandom(4 << 20))


def test_a_datagram_from_a_peer_is_written_to_the_pod(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    pod = udp_socket(a.pod_path, (str(a.pod_ip), 7000))
    peer = udp_socket(b.path, (str(b.underlay), 0))
    try:
        peer.sendto(udp(b.pod_ip, a.pod_ip, 7000, b"hello over flannel"), (str(a.underlay), PORT))
        data, src = pod.recvfrom(2048)
        assert (data, src[0]) == (b"hello over flannel", str(b.pod_ip))
    finally:
        pod.close()
        peer.close()


def test_a_stranger_is_dropped_as_unknown_peer(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    pod = udp_socket(a.pod_path, (str(a.pod_ip), 7001), timeout=0.3)
    stranger = udp_socket(cluster.stranger_path, ("192.168.77.3", 0))
    before = a.backend.counters()
    try:
        stranger.sendto(udp(b.pod_ip, a.pod_ip, 7001, b"let me in"), (str(a.underlay), PORT))
        assert wait_for(lambda: delta(a.backend, before).get("drop_unknown_peer") == 1)
        with pytest.raises(TimeoutError):
            pod.recvfrom(2048)
        assert events(a.backend, before) == {"drop_unknown_peer": 1}
    finally:
        pod.close()
        stranger.close()


def test_malformed_datagrams_are_counted_and_forwarding_goes_on(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    good = udp(b.pod_ip, a.pod_ip, 7002, b"still here")
    bad_checksum = bytearray(good)
    bad_checksum[10] ^= 0xFF
    long_total = bytearray(good)
    long_total[2:4] = (len(good) + 4).to_bytes(2, "big")
    long_total[10:12] = b"\0\0"
    long_total[10:12] = internet_checksum(long_total[:20]).to_bytes(2, "big")
    short_header = bytearray(good)
    short_header[0] = 0x44
    v6 = bytearray(good)
    v6[0] = 0x60
    cases = [
        (b"", "too_short"),
        (bytes(good[:19]), "too_short"),
        (bytes(v6), "not_ipv4"),
        (bytes(short_header), "bad_header_len"),
        (bytes(bad_checksum), "bad_checksum"),
        (bytes(long_total), "bad_total_len"),
        (bytes(good[:-3]), "bad_total_len"),
        (bytes(udp(b.pod_ip, IPv4Address("10.244.3.5"), 7002, b"x")), "not_local"),
        (bytes(udp(b.pod_ip, IPv4Address("192.168.77.1"), 7002, b"x")), "not_local"),
    ]
    pod = udp_socket(a.pod_path, (str(a.pod_ip), 7002))
    peer = udp_socket(b.path, (str(b.underlay), 0))
    before = a.backend.counters()
    try:
        for payload, _ in cases:
            peer.sendto(payload, (str(a.underlay), PORT))
        expected: dict[str, int] = {}
        for _, reason in cases:
            expected[f"drop_{reason}"] = expected.get(f"drop_{reason}", 0) + 1
        assert wait_for(lambda: events(a.backend, before) == expected), delta(a.backend, before)
        peer.sendto(bytes(good), (str(a.underlay), PORT))
        assert pod.recvfrom(2048)[0] == b"still here"
        assert a.backend.alive()
    finally:
        pod.close()
        peer.close()
    assert " 0% packet loss" in ping(a.pod, str(b.pod_ip))


def test_ttl_exhausted_on_arrival_sends_time_exceeded_back(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    peer = udp_socket(b.path, (str(b.underlay), 0))
    before = a.backend.counters()
    offender = udp(b.pod_ip, a.pod_ip, 7003, b"last hop", ttl=1)
    try:
        peer.sendto(bytes(offender), (str(a.underlay), PORT))
        reply, src = peer.recvfrom(2048)
    finally:
        peer.close()
    assert src == (str(a.underlay), PORT)
    assert reply[9] == socket.IPPROTO_ICMP and reply[8] == 64
    assert IPv4Address(reply[12:16]) == a.subnet.network_address      # from flannel0
    assert IPv4Address(reply[16:20]) == b.pod_ip                      # to the offender's source
    assert (reply[20], reply[21]) == (11, 0)                          # time exceeded in transit
    assert reply[28:] == offender[:28]                                # header + 8 bytes
    assert wait_for(lambda: events(a.backend, before) == {"drop_ttl_exceeded": 1,
                                                         "icmp_sent_time_exceeded": 1})


def test_ping_that_runs_out_of_ttl_on_the_far_node_hears_about_it(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    # TTL 2: node A forwards it with TTL 1, node B's backend cannot forward it.
    out = ping(a.pod, str(b.pod_ip), "-t2")
    assert f"From {b.subnet.network_address}" in out and "Time to live exceeded" in out


def test_no_route_answers_net_unreachable(cluster: Cluster) -> None:
    a = cluster.a
    before = a.backend.counters()
    out = ping(a.pod, "10.244.9.9")
    assert f"From {a.subnet.network_address}" in out and "Destination Net Unreachable" in out
    assert wait_for(lambda: events(a.backend, before) == {"drop_no_route": 1,
                                                         "icmp_sent_net_unreach": 1})


def test_routes_swap_while_running(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    try:
        a.backend.set_routes(Routes.EMPTY)
        assert "Destination Net Unreachable" in ping(a.pod, str(b.pod_ip))
        # Without node A among its peers, node B drops A's datagrams as unknown.
        a.backend.set_routes(Routes.build([b.lease()], PORT))
        b.backend.set_routes(Routes.EMPTY)
        before = b.backend.counters()
        assert " 0% packet loss" not in ping(a.pod, str(b.pod_ip))
        assert delta(b.backend, before).get("drop_unknown_peer", 0) >= 1
    finally:
        a.backend.set_routes(Routes.build([b.lease()], PORT))
        b.backend.set_routes(Routes.build([a.lease()], PORT))
    assert " 0% packet loss" in ping(a.pod, str(b.pod_ip))


def test_a_deleted_tun_is_made_again_and_traffic_flows(cluster: Cluster, caplog) -> None:
    a, b = cluster.a, cluster.b
    caplog.set_level(logging.INFO, logger="flanneld")
    before = a.backend.counters()
    ip("link", "del", "flannel0", netns=a.netns)
    assert wait_for(lambda: delta(a.backend, before).get("tun_recreated") == 1)
    assert a.backend.tun_problem() is None and a.backend.alive()
    assert tun_state(a.netns) == TUN_A
    assert " 0% packet loss" in ping(a.pod, str(b.pod_ip))
    assert " 0% packet loss" in ping(b.pod, str(a.pod_ip))
    assert "tun device flannel0 vanished" in caplog.text
    assert "re-created flannel0: 10.244.1.0/32 mtu 1472, route 10.244.0.0/16" in caplog.text
    assert "drop_not_ipv4" not in delta(a.backend, before)       # IPv6 is off again


def test_a_name_taken_by_another_device_is_retried_without_spinning(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    occupy(a.netns, "flannel0")
    taken = ("tun device flannel0 is gone; re-creating it: cannot open tun device flannel0: "
             "a device of another kind already has that name")
    assert wait_for(lambda: a.backend.tun_problem() == taken)
    cpu = time.process_time()
    time.sleep(1.5)                                   # at least one more attempt
    assert time.process_time() - cpu < 0.3            # a pause between attempts, no busy loop
    assert a.backend.alive() and a.backend.tun_problem() == taken
    assert " 0% packet loss" not in ping(a.pod, str(b.pod_ip))
    before = a.backend.counters()
    ip("link", "del", "flannel0", netns=a.netns)      # the name is free again
    assert wait_for(lambda: a.backend.tun_problem() is None, timeout=3)
    assert delta(a.backend, before).get("tun_recreated") == 1
    assert tun_state(a.netns) == TUN_A
    assert " 0% packet loss" in ping(a.pod, str(b.pod_ip))


def test_stop_while_the_tun_is_gone_is_prompt_and_leaves_the_other_device(
        cluster: Cluster) -> None:
    a = cluster.a
    backend = UdpBackend(iface_addr=a.underlay, iface_mtu=UNDERLAY_MTU, port=8303,
                         network=IPv4Network("10.253.0.0/16"),
                         subnet=IPv4Network("10.253.1.0/24"), tun_name="pflost0")
    try:
        with inside(a.path):
            backend.start()
        occupy(a.netns, "pflost0")
        assert wait_for(lambda: "another kind" in (backend.tun_problem() or ""))
        started = time.monotonic()
        backend.stop()
        assert time.monotonic() - started < 1.0
        assert not backend.alive()
        backend.stop()                                               # idempotent
        assert [x["linkinfo"]["info_kind"] for x in ip_json(a.netns, "-d", "link")
                if x["ifname"] == "pflost0"] == ["bridge"]          # not ours: left alone
        with inside(a.path), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((str(a.underlay), 8303))
    finally:
        backend.stop()
        run("ip", "-n", a.netns, "link", "del", "pflost0", check=False)


def test_a_held_tun_cannot_be_opened_twice(cluster: Cluster) -> None:
    with inside(cluster.a.path), pytest.raises(FlannelError, match="flannel0.*in use"):
        open_tun("flannel0")


def test_stop_removes_the_tun_and_its_route_and_frees_the_port(cluster: Cluster) -> None:
    a = cluster.a
    backend = UdpBackend(iface_addr=a.underlay, iface_mtu=UNDERLAY_MTU, port=8300,
                         network=IPv4Network("10.250.0.0/16"),
                         subnet=IPv4Network("10.250.1.0/24"), tun_name="pfstop0")
    try:
        with inside(a.path):
            backend.start()
        assert backend.alive()
        assert ip_json(a.netns, "route", "show", "dev", "pfstop0")
        started = time.monotonic()
        backend.stop()
        assert time.monotonic() - started < 1.0
    finally:
        backend.stop()
    assert not backend.alive()
    assert not [x for x in ip_json(a.netns, "link") if x["ifname"] == "pfstop0"]
    assert not [r for r in ip_json(a.netns, "route") if r["dst"] == "10.250.0.0/16"]
    with inside(a.path), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((str(a.underlay), 8300))
    backend.stop()                                                   # idempotent


def test_start_on_a_busy_port_fails_cleanly(cluster: Cluster) -> None:
    a = cluster.a
    backend = UdpBackend(iface_addr=a.underlay, iface_mtu=UNDERLAY_MTU, port=8301,
                         network=IPv4Network("10.251.0.0/16"),
                         subnet=IPv4Network("10.251.1.0/24"), tun_name="pfbusy0")
    with inside(a.path):
        holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        holder.bind((str(a.underlay), 8301))
        with inside(a.path), pytest.raises(FlannelError,
                                           match="192.168.77.1:8301: Address already in use"):
            backend.start()
    finally:
        holder.close()
        backend.stop()
    assert not backend.alive()
    assert not [x for x in ip_json(a.netns, "link") if x["ifname"] == "pfbusy0"]


def test_a_failure_after_the_tun_is_open_leaves_no_tun(cluster: Cluster) -> None:
    a = cluster.a
    backend = UdpBackend(iface_addr=a.underlay, iface_mtu=70000, port=8302,
                         network=IPv4Network("10.252.0.0/16"),
                         subnet=IPv4Network("10.252.1.0/24"), tun_name="pfbad0")
    try:
        with inside(a.path), pytest.raises(FlannelError, match="pfbad0: set MTU 69972"):
            backend.start()
    finally:
        backend.stop()
    assert not [x for x in ip_json(a.netns, "link") if x["ifname"] == "pfbad0"]
    with inside(a.path), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((str(a.underlay), 8302))
