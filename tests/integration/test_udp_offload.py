"""The udp backend's offload data path keeps traffic intact, against the real kernel.

    pod A 10.244.1.2 -- node A --eth0 192.168.94.1--+
                          \\                         |
                           eth1 192.168.93.1        |
                             |                      |  switch (bridge): the clean underlay
                           relay (lossy L2 wire)    |
                             |                      |
                           eth1 192.168.93.2        |
                          /                         |
    pod B 10.244.2.2 -- node B --eth0 192.168.94.2--+
    pod C 10.244.3.2 -- node C --eth0 192.168.94.3--+  flannel's plain proxy (stand-in)

Nodes A and B run `UdpBackend`s in this process (started inside their namespaces, as in
test_udp_backend), each with offload on or off as a test asks; they talk over the switch,
or over the relay when a test wants loss and reordering. Node C runs `PlainProxy`, a
stand-in for flannel's C proxy: a plain tun, every packet passed on unchanged.

Loss and reordering: the kernel these tests run on has no netem qdisc, so they are made
by `underlay.Relay`, a thread that copies frames between the relay namespace's two veth
ends with AF_PACKET sockets and drops or delays single datagrams (it cuts UDP GSO frames
into their datagrams first). The relay ends have TSO off and the nodes' relay-facing
ends have GRO on with a threaded NAPI poll, so the datagrams the relay writes can be
coalesced again for a receiver that asked for UDP_GRO. Every MTU on the underlay is 1500,
so flannel0 and the pods get 1472.

Beyond the content hashes: the relay checks every inner packet it carries (complete, IP
and TCP/UDP/ICMP checksums right, as a plain tun on the far side needs them), and after
every test no kernel in the lab may have counted a bad checksum or IP header (a segment
dropped for its checksum is sent again, so a hash alone would not notice). One test has
the relay corrupt segments on purpose: they must be dropped, not delivered.

Every transfer, ping and echo is bounded by timeouts; every namespace is removed at the
end of the module, every backend, relay and proxy at the end of its test.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

import pytest

from flanneld.backends.udp import DROP_REASONS, OFFLOADS, UdpBackend
from flanneld.core.lease import Lease
from flanneld.core.routes import Routes
from lab.netns import Namespaces, run
from tests.integration.test_udp_backend import (
    NETWORK,
    PORT,
    UNDERLAY_MTU,
    delta,
    inside,
    ip,
    ping,
    udp_socket,
)
from tests.integration.underlay import PlainProxy, Relay, offload

pytestmark = pytest.mark.integration

POD_MTU = UNDERLAY_MTU - UdpBackend.OVERHEAD       # 1472: flannel0's, and the pods' (FLANNEL_MTU)
MAX_PING = POD_MTU - 28                             # the largest ICMP payload that fits with DF
MAX_UDP = POD_MTU - 28                              # the largest UDP payload that fits with DF
PAYLOAD = 20 << 20                                  # bytes per TCP transfer
LOSSY_PAYLOAD = 8 << 20                             # per direction through the lossy relay
TRANSFER_TIMEOUT = 30.0
DROP, REORDER = 0.01, 0.02                          # the relay's faults, per datagram
IP_MTU_DISCOVER, IP_PMTUDISC_DONT, IP_PMTUDISC_DO = 10, 0, 2     # <linux/in.h>
DROP_KEYS = frozenset(f"drop_{r}" for r in DROP_REASONS)

# (node A offload, node B offload): both, one node only (each way), neither
MODES = [(True, True), (True, False), (False, True), (False, False)]
MODE_IDS = ["on-on", "on-off", "off-on", "off-off"]


# --- the lab ------------------------------------------------------------------------------

@dataclass
class Host:
    index: int                  # 1 A, 2 B, 3 C
    netns: str
    path: str
    pod: str
    pod_path: str

    @property
    def subnet(self) -> IPv4Network:
        return IPv4Network(f"10.244.{self.index}.0/24")

    @property
    def pod_ip(self) -> IPv4Address:
        return self.subnet.network_address + 2

    @property
    def direct(self) -> IPv4Address:
        """The address on the switch."""
        return IPv4Address(f"192.168.94.{self.index}")

    @property
    def relayed(self) -> IPv4Address:
        """The address on the relay's wire (nodes A and B only)."""
        return IPv4Address(f"192.168.93.{self.index}")

    def lease(self, relayed: bool = False) -> Lease:
        return Lease(self.subnet, self.relayed if relayed else self.direct)


@dataclass
class Lab:
    a: Host
    b: Host
    c: Host
    relay_path: str


def build(ns: Namespaces) -> Lab:
    switch, relay = ns.make("pfofsw"), ns.make("pfofrl")
    ip("link", "add", "br0", "type", "bridge", netns=switch)
    ip("link", "set", "br0", "up", netns=switch)
    for key in ("all", "default"):          # the relay is a wire: no chatter of its own
        run("sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1", netns=relay, check=False)
    hosts = []
    for i, role in ((1, "a"), (2, "b"), (3, "c")):
        host, pod = ns.make(f"pfofn{role}"), ns.make(f"pfofp{role}")
        h = Host(i, host, ns.path(host), pod, ns.path(pod))
        ip("link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", host,
           netns=switch)
        ip("link", "set", f"p{i}", "master", "br0", "up", netns=switch)
        ip("addr", "add", f"{h.direct}/24", "dev", "eth0", netns=host)
        ip("link", "set", "eth0", "up", netns=host)
        if role != "c":
            ip("link", "add", f"r{i}", "type", "veth", "peer", "name", "eth1", "netns", host,
               netns=relay)
            ip("link", "set", f"r{i}", "up", netns=relay)
            ip("addr", "add", f"{h.relayed}/24", "dev", "eth1", netns=host)
            ip("link", "set", "eth1", "up", netns=host)
            assert not offload(ns.path(relay), f"r{i}", "tso", False)
            assert offload(h.path, "eth1", "gro", True)
            run("sh", "-c", "echo 1 > /sys/class/net/eth1/threaded", netns=host)
        run("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=host)
        gw = h.subnet.network_address + 1
        ip("link", "add", "vpod", "mtu", str(POD_MTU), "type", "veth", "peer", "name", "eth0",
           "netns", pod, netns=host)
        ip("addr", "add", f"{gw}/24", "dev", "vpod", netns=host)
        ip("link", "set", "vpod", "up", netns=host)
        ip("link", "set", "eth0", "mtu", str(POD_MTU), netns=pod)    # the peer keeps 1500
        ip("addr", "add", f"{h.pod_ip}/24", "dev", "eth0", netns=pod)
        ip("link", "set", "eth0", "up", netns=pod)
        ip("route", "add", "default", "via", str(gw), netns=pod)
        hosts.append(h)
    a, b, c = hosts
    return Lab(a, b, c, ns.path(relay))


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    ns = Namespaces()
    try:
        yield build(ns)
    finally:
        ns.cleanup()


@pytest.fixture(scope="module")
def payload() -> tuple[bytes, str]:
    data = os.urandom(PAYLOAD)
    return data, hashlib.sha256(data).hexdigest()


def check_offloads(backend: UdpBackend, wanted: bool) -> None:
    """The offloads the backend says it runs with: all of them when asked for (this kernel
    has them all), none when not."""
    assert set(backend.offloads) == set(OFFLOADS)
    assert set(backend.offloads.values()) == {wanted}, backend.offloads


def gso_sent(backend: UdpBackend) -> bool:
    """Whether the backend says it sends with UDP GSO."""
    return backend.offloads["udp_gso"]


@contextlib.contextmanager
def backends(lab: Lab, on_a: bool, on_b: bool, *,
             relayed: bool = False) -> Iterator[tuple[UdpBackend, UdpBackend]]:
    """Backends on nodes A and B with offload as given, over the relay or the switch; both
    route to each other and to node C (over the switch)."""
    made: list[UdpBackend] = []
    try:
        for host, peer, on in ((lab.a, lab.b, on_a), (lab.b, lab.a, on_b)):
            backend = UdpBackend(iface_addr=host.relayed if relayed else host.direct,
                                 iface_mtu=UNDERLAY_MTU, port=PORT, network=NETWORK,
                                 subnet=host.subnet, offload=on)
            # Routes before start: a round that began before set_routes would still route
            # with the empty table (stray packets from the previous test can start one).
            backend.set_routes(Routes.build([peer.lease(relayed), lab.c.lease()], PORT))
            with inside(host.path):
                backend.start()
            made.append(backend)
            check_offloads(backend, on)
        ba, bb = made
        yield ba, bb
    finally:
        for backend in made:
            backend.stop()


@pytest.fixture
def plain_peer(lab: Lab) -> Iterator[PlainProxy]:
    """flannel's proxy (the stand-in) on node C, peering with A and B over the switch."""
    c = lab.c
    with PlainProxy(c.netns, c.path, bind=(str(c.direct), PORT), address=c.subnet.network_address,
                    mtu=POD_MTU, network=NETWORK,
                    peers={h.subnet: (str(h.direct), PORT) for h in (lab.a, lab.b)}) as proxy:
        yield proxy
    assert proxy.error is None, proxy.error


# --- traffic ------------------------------------------------------------------------------

class Transfer:
    """`data` over TCP from `src`'s pod to `dst`'s pod, in background threads: the receiver
    hashes what arrives. `wait()` gives "<bytes> <sha256>" of what arrived, or why not."""

    def __init__(self, src: Host, dst: Host, data: bytes, port: int,
                 timeout: float = TRANSFER_TIMEOUT):
        self.data, self.port = data, port
        self.deadline = time.monotonic() + timeout
        self.received = 0
        self.result: str | None = None
        self.problems: list[str] = []
        with inside(dst.pod_path):
            self.server = socket.create_server((str(dst.pod_ip), port))
        with inside(src.pod_path):
            self.client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.dst_ip = str(dst.pod_ip)
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._serve, self._send)]
        for t in self.threads:
            t.start()

    def _left(self) -> float:
        return max(0.01, self.deadline - time.monotonic())

    def _serve(self) -> None:
        try:
            self.server.settimeout(self._left())
            conn, _ = self.server.accept()
            with conn:
                h, buf = hashlib.sha256(), bytearray(1 << 16)
                while True:
                    conn.settimeout(self._left())
                    n = conn.recv_into(buf)
                    if not n:
                        break
                    h.update(memoryview(buf)[:n])
                    self.received += n
            self.result = f"{self.received} {h.hexdigest()}"
        except OSError as e:
            self.problems.append(f"receiver: {e!r} after {self.received} bytes")

    def _send(self) -> None:
        try:
            self.client.settimeout(self._left())
            self.client.connect((self.dst_ip, self.port))
            self.client.settimeout(self._left())
            self.client.sendall(self.data)
            self.client.shutdown(socket.SHUT_WR)
        except OSError as e:
            self.problems.append(f"sender: {e!r}")

    def wait(self) -> str:
        try:
            for t in self.threads:
                t.join(self._left() + 1)
        finally:
            self.client.close()
            self.server.close()
        for t in self.threads:
            t.join(1)
        return self.result or "; ".join(self.problems) or "no result"


def expected(data: bytes) -> str:
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}"


def drops(backend: UdpBackend, before: dict[str, int]) -> dict[str, int]:
    """The drop counts (the existing reasons only) that moved since `before`."""
    return {k: v for k, v in delta(backend, before).items() if k in DROP_KEYS}


# A segment with a bad checksum is dropped by the kernel that receives it and then sent
# again, so a transfer can still arrive whole: these must not move either.
CHECKSUM_ERRORS = ("Ip.InHdrErrors", "Tcp.InCsumErrors", "Udp.InCsumErrors",
                   "Icmp.InCsumErrors")


def snmp(netns_path: str) -> dict[str, int]:
    """The namespace's IP/ICMP/TCP/UDP counters (its /proc/net/snmp), as "Tcp.InSegs": n."""
    with inside(netns_path), open("/proc/thread-self/net/snmp") as f:
        lines = f.read().splitlines()
    counts = {}
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        proto, *keys = names.split()
        for key, value in zip(keys, values.split()[1:], strict=True):
            counts[f"{proto.rstrip(':')}.{key}"] = int(value)
    return counts


def checksum_errors(lab: Lab) -> dict[str, int]:
    """CHECKSUM_ERRORS of every node and pod, by "<namespace> <counter>"."""
    errors = {}
    for host in (lab.a, lab.b, lab.c):
        for role, path in (("node", host.path), ("pod", host.pod_path)):
            counts = snmp(path)
            errors.update({f"{role} {host.index} {k}": counts[k] for k in CHECKSUM_ERRORS})
    return errors


@pytest.fixture(autouse=True)
def clean_checksums(lab: Lab, request: pytest.FixtureRequest) -> Iterator[dict[str, int]]:
    """After every test: no kernel in the lab saw a bad checksum or a bad IP header, unless
    the test asks for `checksum_errors_expected` (then it gets the counts before)."""
    before = checksum_errors(lab)
    yield before
    if "checksum_errors_expected" in request.fixturenames:
        return
    after = checksum_errors(lab)
    assert {k: v - before[k] for k, v in after.items() if v != before[k]} == {}


@pytest.fixture
def checksum_errors_expected(clean_checksums: dict[str, int]) -> dict[str, int]:
    """For a test that makes bad checksums on purpose: the counts before it."""
    return clean_checksums


def report(**backends_before: tuple[UdpBackend, dict[str, int]]) -> str:
    return "; ".join(f"{name}: {delta(b, before)}" for name, (b, before) in
                     backends_before.items())


def udp_echo(client_host: Host, server_host: Host, port: int, sizes: tuple[int, ...],
             *, df: bool) -> list[tuple[int, str]]:
    """Each size once from `client_host`'s pod to an echo in `server_host`'s pod and back;
    the sizes whose echo was missing or different, with what happened."""
    pmtu = IP_PMTUDISC_DO if df else IP_PMTUDISC_DONT
    server = udp_socket(server_host.pod_path, (str(server_host.pod_ip), port), timeout=0.1)
    client = udp_socket(client_host.pod_path, (str(client_host.pod_ip), 0), timeout=2.0)
    for s in (server, client):
        s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, pmtu)
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            try:
                data, addr = server.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            server.sendto(data, addr)

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    bad = []
    try:
        for size in sizes:
            data = os.urandom(size)
            client.sendto(data, (str(server_host.pod_ip), port))
            try:
                back = client.recv(65536)
            except TimeoutError:
                bad.append((size, "no echo"))
                continue
            if back != data:
                bad.append((size, f"echo of {len(back)} bytes differs"))
    finally:
        stop.set()
        t.join(2)
        client.close()
        server.close()
    return bad


def df_ping(netns: str, dst: IPv4Address, size: int, *args: str) -> str:
    return ping(netns, str(dst), "-M", "do", "-s", str(size), *args)


def pinged(out: str, dst: IPv4Address, size: int) -> bool:
    return " 0% packet loss" in out and f"{size + 8} bytes from {dst}:" in out


# --- 1. TCP through every combination -----------------------------------------------------

@pytest.mark.parametrize("way", ["a-to-b", "b-to-a"])
@pytest.mark.parametrize(("on_a", "on_b"), MODES, ids=MODE_IDS)
def test_tcp_content_arrives_intact(lab: Lab, payload: tuple[bytes, str], on_a: bool,
                                    on_b: bool, way: str) -> None:
    data, digest = payload
    src, dst = (lab.a, lab.b) if way == "a-to-b" else (lab.b, lab.a)
    with backends(lab, on_a, on_b) as (ba, bb):
        before_a, before_b = ba.counters(), bb.counters()
        got = Transfer(src, dst, data, 5301).wait()
        why = report(a=(ba, before_a), b=(bb, before_b))
        assert got == f"{len(data)} {digest}", why
        assert drops(ba, before_a) == {} and drops(bb, before_b) == {}, why
        assert ba.alive() and bb.alive()


def test_tcp_both_ways_at_once(lab: Lab, payload: tuple[bytes, str]) -> None:
    data, _ = payload
    with backends(lab, True, True) as (ba, bb):
        before_a, before_b = ba.counters(), bb.counters()
        there = Transfer(lab.a, lab.b, data, 5302)
        back = Transfer(lab.b, lab.a, data[::-1], 5303)
        got = (there.wait(), back.wait())
        why = report(a=(ba, before_a), b=(bb, before_b))
        assert got == (expected(data), expected(data[::-1])), why
        assert drops(ba, before_a) == {} and drops(bb, before_b) == {}, why


# --- 2. loss and reordering on the underlay -----------------------------------------------

@pytest.mark.parametrize(("on_a", "on_b"), [(True, True), (True, False), (False, False)],
                         ids=["on-on", "on-off", "off-off"])
def test_tcp_survives_loss_and_reordering(lab: Lab, payload: tuple[bytes, str], on_a: bool,
                                          on_b: bool) -> None:
    data = payload[0][:LOSSY_PAYLOAD]
    for host in (lab.a, lab.b):                   # so that ARP has to cross the relay too
        ip("neigh", "flush", "dev", "eth1", netns=host.netns)
    with Relay(lab.relay_path, "r1", "r2", seed=8285, drop=DROP, reorder=REORDER) as relay, \
            backends(lab, on_a, on_b, relayed=True) as (ba, bb):
        before_a, before_b = ba.counters(), bb.counters()
        there = Transfer(lab.a, lab.b, data, 5304)
        back = Transfer(lab.b, lab.a, data[::-1], 5305)
        got = (there.wait(), back.wait())
        why = f"{report(a=(ba, before_a), b=(bb, before_b))}; relay: {relay.stats}"
        assert got == (expected(data), expected(data[::-1])), why
        assert drops(ba, before_a) == {} and drops(bb, before_b) == {}, why
        gso = gso_sent(ba) or gso_sent(bb)
    stats = relay.stats
    assert relay.error is None, relay.error
    assert stats["dropped"] > stats["datagrams"] * DROP / 3, stats
    assert stats["reordered"] > stats["datagrams"] * REORDER / 3, stats
    assert min(relay.arp_by_side.values()) > 0, relay.arp_by_side      # ARP crossed both ways
    clean = ("send_errors", "overflows", "other_gso", "ipv4_fragments", "inner_bad")
    assert {k: stats[k] for k in clean} == dict.fromkeys(clean, 0), (
        stats, relay.send_errnos, relay.bad_inner)
    assert stats["inner_checked"] > len(data) * 2 // POD_MTU, stats   # every wire packet
    if gso:
        assert stats["gso_frames"] > 0, stats      # the datagrams were cut out of GSO frames


@pytest.mark.parametrize(("on_a", "on_b"), MODES, ids=MODE_IDS)
def test_a_corrupted_segment_never_reaches_the_pod(
        lab: Lab, payload: tuple[bytes, str], checksum_errors_expected: dict[str, int],
        on_a: bool, on_b: bool) -> None:
    """An inner TCP segment that went bad before it was sent (outer UDP checksum right, TCP
    checksum wrong) must be dropped, as the pod's kernel drops it behind a plain tun, and
    sent again by TCP; it must not be written into the pod as good."""
    data = payload[0][:LOSSY_PAYLOAD // 2]
    with Relay(lab.relay_path, "r1", "r2", seed=8286, corrupt=0.005) as relay, \
            backends(lab, on_a, on_b, relayed=True) as (ba, bb):
        before_a, before_b = ba.counters(), bb.counters()
        got = Transfer(lab.a, lab.b, data, 5309).wait()
        why = f"{report(a=(ba, before_a), b=(bb, before_b))}; relay: {relay.stats}"
        assert got == expected(data), why
    assert relay.error is None, relay.error
    assert relay.stats["corrupted"] > 0, relay.stats
    after = checksum_errors(lab)
    seen = after[f"pod {lab.b.index} Tcp.InCsumErrors"] - \
        checksum_errors_expected[f"pod {lab.b.index} Tcp.InCsumErrors"]
    assert seen > 0, why          # and they were noticed (dropped) where a plain tun would


# --- 3. full-size and odd-size packets with DF set ----------------------------------------

DF_SIZES = (0, 1, 7, 64, 99, 511, 1000, 1001, 1399, MAX_PING - 1, MAX_PING)


@pytest.mark.parametrize(("on_a", "on_b"), MODES, ids=MODE_IDS)
def test_df_pings_up_to_the_mtu(lab: Lab, on_a: bool, on_b: bool) -> None:
    with backends(lab, on_a, on_b) as (ba, bb):
        before_a, before_b = ba.counters(), bb.counters()
        failed = []
        for src, dst in ((lab.a, lab.b), (lab.b, lab.a)):
            for size in DF_SIZES:
                out = df_ping(src.pod, dst.pod_ip, size)
                if not pinged(out, dst.pod_ip, size):
                    failed.append((src.index, size, out))
        # The node's own stack, from flannel0's address: the same limit.
        out = df_ping(lab.a.netns, lab.b.pod_ip, MAX_PING)
        if not pinged(out, lab.b.pod_ip, MAX_PING):
            failed.append(("node a", MAX_PING, out))
        assert failed == [], report(a=(ba, before_a), b=(bb, before_b))
        assert drops(ba, before_a) == {} and drops(bb, before_b) == {}


def test_df_ping_above_the_mtu_fails_at_once(lab: Lab) -> None:
    with backends(lab, True, True):
        for netns in (lab.a.pod, lab.a.netns):            # the pod, and the node itself
            started = time.monotonic()
            out = df_ping(netns, lab.b.pod_ip, MAX_PING + 1, "-W1")    # ping waits that long
            assert time.monotonic() - started < 2.5, out
            assert "message too long" in out.lower() and "mtu=1472" in out, out


def test_a_pod_with_a_larger_mtu_hears_frag_needed_and_tcp_adapts(
        lab: Lab, payload: tuple[bytes, str]) -> None:
    a = lab.a
    try:
        ip("route", "flush", "cache", netns=a.pod)
        ip("link", "set", "vpod", "mtu", str(UNDERLAY_MTU), netns=a.netns)
        ip("link", "set", "eth0", "mtu", str(UNDERLAY_MTU), netns=a.pod)
        with backends(lab, True, True) as (ba, bb):
            started = time.monotonic()
            out = df_ping(a.pod, lab.b.pod_ip, MAX_PING + 1, "-W1")
            assert time.monotonic() - started < 2.5, out
            assert "Frag needed and DF set (mtu = 1472)" in out, out   # from node A
            assert pinged(df_ping(a.pod, lab.b.pod_ip, MAX_PING), lab.b.pod_ip, MAX_PING)
            # TCP from the pod finds the path MTU (the same limit for its GSO bursts).
            data = payload[0][:4 << 20]
            got = Transfer(a, lab.b, data, 5306).wait()
            assert got == expected(data), report(a=(ba, {}), b=(bb, {}))
    finally:
        ip("link", "set", "eth0", "mtu", str(POD_MTU), netns=a.pod)
        ip("link", "set", "vpod", "mtu", str(POD_MTU), netns=a.netns)
        ip("route", "flush", "cache", netns=a.pod)


# --- 4. UDP and ICMP ----------------------------------------------------------------------

UDP_DF_SIZES = (0, 1, 2, 3, 100, 1001, MAX_UDP - 1, MAX_UDP)
UDP_FRAGMENTED = (MAX_UDP + 1, 4000, 9001, 65507)        # DF clear: the pod fragments them


@pytest.mark.parametrize(("on_a", "on_b"), MODES, ids=MODE_IDS)
def test_udp_echo_across_pods(lab: Lab, on_a: bool, on_b: bool) -> None:
    with backends(lab, on_a, on_b) as (ba, bb):
        before_a, before_b = ba.counters(), bb.counters()
        bad = {
            "a->b df": udp_echo(lab.a, lab.b, 7101, UDP_DF_SIZES, df=True),
            "b->a df": udp_echo(lab.b, lab.a, 7102, UDP_DF_SIZES, df=True),
            "a->b fragmented": udp_echo(lab.a, lab.b, 7103, UDP_FRAGMENTED, df=False),
            "b->a fragmented": udp_echo(lab.b, lab.a, 7104, UDP_FRAGMENTED, df=False),
        }
        why = report(a=(ba, before_a), b=(bb, before_b))
        assert {k: v for k, v in bad.items() if v} == {}, why
        assert drops(ba, before_a) == {} and drops(bb, before_b) == {}, why


@pytest.mark.parametrize(("on_a", "on_b"), MODES, ids=MODE_IDS)
def test_ping_bursts_both_ways(lab: Lab, on_a: bool, on_b: bool) -> None:
    with backends(lab, on_a, on_b):
        for src, dst in ((lab.a, lab.b), (lab.b, lab.a)):
            out = run("ping", "-n", "-q", "-c100", "-i0.002", "-W2", str(dst.pod_ip),
                      netns=src.pod, check=False, timeout=10).stdout
            assert "100 received" in out, out


# --- 5. a flannel-style plain peer on the same wire ---------------------------------------

@pytest.mark.parametrize("way", ["a-to-c", "c-to-a"])
@pytest.mark.parametrize("on_a", [True, False], ids=["a-on", "a-off"])
def test_tcp_with_flannels_plain_proxy(lab: Lab, plain_peer: PlainProxy,
                                       payload: tuple[bytes, str], on_a: bool,
                                       way: str) -> None:
    data, digest = payload
    src, dst = (lab.a, lab.c) if way == "a-to-c" else (lab.c, lab.a)
    with backends(lab, on_a, False) as (ba, _):
        before = ba.counters()
        got = Transfer(src, dst, data, 5307).wait()
        why = f"{report(a=(ba, before))}; plain proxy: {plain_peer.stats}"
        assert got == f"{len(data)} {digest}", why
        assert drops(ba, before) == {}, why
    assert plain_peer.stats["truncated"] == plain_peer.stats["errors"] == 0, plain_peer.stats


def test_pings_and_udp_with_flannels_plain_proxy(lab: Lab, plain_peer: PlainProxy) -> None:
    a, c = lab.a, lab.c
    with backends(lab, True, True) as (ba, _):
        before = ba.counters()
        failed = [(src.index, size) for src, dst in ((a, c), (c, a)) for size in DF_SIZES
                  if not pinged(df_ping(src.pod, dst.pod_ip, size), dst.pod_ip, size)]
        bad = {
            "a->c": udp_echo(a, c, 7105, UDP_DF_SIZES, df=True)
            + udp_echo(a, c, 7106, UDP_FRAGMENTED, df=False),
            "c->a": udp_echo(c, a, 7107, UDP_DF_SIZES, df=True)
            + udp_echo(c, a, 7108, UDP_FRAGMENTED, df=False),
        }
        why = f"{report(a=(ba, before))}; plain proxy: {plain_peer.stats}"
        assert failed == [], why
        assert {k: v for k, v in bad.items() if v} == {}, why
        assert drops(ba, before) == {}, why
    assert plain_peer.stats["truncated"] == plain_peer.stats["errors"] == 0, plain_peer.stats
