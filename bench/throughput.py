"""Pod-to-pod throughput and latency across two nodes: pyflannel (the whole daemon, and its
udp backend alone with and without offloads) against OpenVPN (a user-space tun + UDP tunnel
like ours, in clear and with AES-256-GCM), wireguard-go (user-space WireGuard), kernel VXLAN
and plain routes (host-gw).

Run as root:  python -m bench.throughput [--rounds N] [--seconds S] [--modes M,...] [--json]

Mode flanneld is what a cluster runs: etcd on an underlay bridge, two nodes each running
the installed `flanneld` (lab.cluster), a pod on each added through the installed CNI
plugin (veth onto the bridge cni0, pod MTU 1472). The other modes share one topology
builder: two node namespaces joined by a veth underlay (MTU 1500), each with a pod
namespace on a veth whose node end is the pod's gateway. Per mode the nodes get:

- udp:       each node's UdpBackend in its own process (`bench.udp_node`, started with
             `ip netns exec`), as on real nodes, offloads on (the backend's default); pod
             MTU 1472 (underlay - 28).
- udp-plain: the same with offloads off (`bench.udp_node --offload off`).
- udp-sealed: the udp backend's encrypted mode (`bench.udp_node --encryption aes-256-gcm`,
             keys from a secret drawn per run), offloads on; pod MTU 1444 (underlay - 56).
- openvpn:   one `openvpn` per node (started with `ip netns exec`), peer to peer over UDP
             with neither TLS nor a key, so `--cipher none --auth none`: cleartext, no
             HMAC; `--disable-dco`, so that the process moves the packets itself, as ours
             does. Its tun device gets `<own subnet>.0 peer <peer subnet>.0` and the node
             a route `<peer subnet> dev tun0`. Pod MTU 1472 and `--tun-mtu 1472`: without
             keys OpenVPN puts no header of its own on a packet (no opcode, packet ID, IV
             or HMAC; no compression byte unless compression is asked for), so a datagram
             is the pod's packet plus IPv4 and UDP headers, 28 bytes, as with flannel's
             udp. Checked by counting bytes: a 1472-byte packet into tun0 leaves eth0 as a
             1500-byte datagram. `--mtu-disc yes` sets DF and refuses a datagram too big
             for the underlay instead of fragmenting it; `--mssfix 0` leaves TCP's MSS to
             the pod MTU as in the other modes; `--rcvbuf` asks for the socket receive
             buffer the udp backend asks for (RCVBUF), so both tunnels get the same.
             `--verb 3` logs "Initialization Sequence Completed", which the run waits for
             before it adds the routes and pings across.
- openvpn-gcm: the same in TLS mode (static-key mode cannot use an AEAD), node A
             `--tls-server --dh none` and node B `--tls-client`, each with a certificate
             of a throwaway CA made for the run (bench.pki, EC P-256) and checking the
             peer's (`--remote-cert-tls`, `--verify-x509-name`); data channel AES-256-GCM
             (`--data-ciphers` and `--data-ciphers-fallback`, so both ends agree; the run
             checks the log says so). A data packet gains 24 bytes (P_DATA_V2 opcode and
             peer ID 4, packet ID 4, GCM tag 16; the IV is implicit), so pod MTU and
             `--tun-mtu` 1448: a 1448-byte packet into tun0 leaves eth0 as a 1500-byte
             datagram.
- wireguard-go: the user-space WireGuard (`wireguard-go -f`, one per node, started with
             `ip netns exec`), configured with `wg set`: an X25519 key pair per node made
             for the run, listen port 51820, the peer's key, endpoint and allowed IPs (its
             pod subnet). The device gets `<own subnet>.0/32` and the node a route
             `<peer subnet> dev <device>`. MTU 1440, WireGuard's rule for IPv4 (underlay -
             60: IPv4 and UDP 28, message type, receiver index and counter 16, tag 16): a
             1440-byte packet leaves as a 1500-byte datagram. The device is named
             `pfwg<8 hex>`, unique, since wireguard-go's control socket is
             /run/wireguard/<device>.sock whatever the namespace. Its UDP socket keeps the
             default receive buffer (it has no option for one, and net.core.rmem_default
             is the whole machine's).
- vxlan:     a kernel vxlan device per node (VNI 1, port 4789) and, as flannel's vxlan
             backend does, a route `<peer subnet> via <peer vtep> dev vxlan0 onlink` with a
             static neighbour; pod MTU 1450 (underlay - 50).
- host-gw:   a route `<peer subnet> via <peer underlay IP>`; pod MTU 1500.

A round measures every mode once, in an order that rotates every round. For a mode: ping
pod A -> pod B (50 pings 10 ms apart, median RTT), then `iperf3 -c` in pod A against a
one-off `iperf3 -s -1` in pod B: TCP 1 stream, TCP 4 streams (-P 4) and UDP at 1 Gbit/s
offered (-u -b 1G -l 1400: received Mbit/s and loss; 1400 bytes fit every pod MTU).
Around the TCP 1-stream run the tunnel processes' CPU seconds are read (udp_node's SIGUSR1
report; utime + stime in /proc/<pid>/stat, all threads, for openvpn, wireguard-go and
flanneld): % of one CPU per process over the test's duration and their CPU seconds
together per Gbit received; for pyflannel also the packets per second through node A's
tun -> udp path. Summary: medians over the rounds; the ratios pyflannel/vxlan and
pyflannel/host-gw of the TCP 1-stream medians; and against each reference measured
(openvpn, openvpn-gcm, wireguard-go), each pyflannel mode and each later reference per
round for TCP 1 and 4 streams, UDP received and RTT (for RTT lower is better), with the
median of those per-round ratios.

Before the rounds, each reference tunnel's MTU is checked: a ping of the pod MTU from pod
A, with DF, must cross node A's eth0 as UDP datagrams none of which is a fragment or larger
than the underlay MTU (bench.underlay captures them).

Everything lives in namespaces this run creates (unique `pfbt...` names; mode flanneld's
are lab.cluster's); they, every process the run started and the temp directories of the
keys and certificates are removed at the end, also on failure, Ctrl-C or SIGTERM. Nothing
is added to the namespace the driver runs in. Every subprocess has a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import IO, Any, NoReturn

from bench import pki, underlay
from flanneld.backends.udp import RCVBUF
from lab.cluster import Cluster
from lab.netns import Namespaces, run, unique

MODES = ("flanneld", "udp", "udp-plain", "udp-sealed", "udp-baseline", "openvpn",
         "openvpn-gcm", "wireguard-go", "vxlan", "host-gw")
PYFLANNEL = ("flanneld", "udp", "udp-plain", "udp-sealed", "udp-baseline")
REFERENCES = ("openvpn", "openvpn-gcm", "wireguard-go")   # the user-space tunnels compared
# mode -> bench.udp_node --offload; udp-baseline runs the udp_node of --baseline's checkout
UDP_NODE_OFFLOAD = {"udp": "on", "udp-plain": "off", "udp-sealed": "on", "udp-baseline": "on"}
SEALED_WITH = "aes-256-gcm"   # udp-sealed's AEAD: the faster of the two here (core.sealing)
UNDERLAY_MTU = 1500
OPENVPN_GCM_OVERHEAD = 24     # P_DATA_V2 opcode + peer ID 4, packet ID 4, GCM tag 16
POD_MTU = {"udp": UNDERLAY_MTU - 28, "udp-plain": UNDERLAY_MTU - 28,
           "udp-sealed": UNDERLAY_MTU - 28 - 28,  # + epoch 4, counter 8, tag 16
           "udp-baseline": UNDERLAY_MTU - 28,
           "openvpn": UNDERLAY_MTU - 28, "openvpn-gcm": UNDERLAY_MTU - 28 - OPENVPN_GCM_OVERHEAD,
           "wireguard-go": UNDERLAY_MTU - 60,     # WireGuard's rule for an IPv4 underlay
           "vxlan": UNDERLAY_MTU - 50, "host-gw": UNDERLAY_MTU}
NETWORK = IPv4Network("10.244.0.0/16")
SUBNETS = (IPv4Network("10.244.1.0/24"), IPv4Network("10.244.2.0/24"))
UNDERLAY = (IPv4Address("192.168.90.1"), IPv4Address("192.168.90.2"))
VTEP_MACS = ("02:00:0a:f4:01:00", "02:00:0a:f4:02:00")
IPERF_PORT = 5201
UDP_RATE = "1G"                                      # iperf3 -u -b: offered load
UDP_LEN = min(1400, min(POD_MTU.values()) - 28)      # iperf3 -l: fits every pod MTU
PINGS, PING_INTERVAL = 50, 0.01
OPENVPN_PORT = 1194
OPENVPN_TUN = "tun0"
OPENVPN_NAMES = ("node-a", "node-b")                 # the certificates' common names
OPENVPN_GCM = "AES-256-GCM"
WG_PORT = 51820
WG_SOCKETS = Path("/run/wireguard")                  # wireguard-go's <device>.sock
COMPARED = ("tcp1_mbps", "tcp4_mbps", "udp_mbps", "rtt_ms")    # ours/reference per round
CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parents[1]


class BenchError(RuntimeError):
    pass


class Interrupted(BaseException):
    """SIGTERM, turned into an exception so that the cleanup runs."""


def _sigterm(*_: object) -> NoReturn:
    raise Interrupted()


# --- topology -------------------------------------------------------------------------

@dataclass
class Topology:
    mode: str
    nodes: list[str]
    pods: list[str]
    pod_ips: list[IPv4Address]
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)  # the tunnel per node
    logs: list[IO[bytes]] = field(default_factory=list)      # openvpn's/wireguard-go's output
    cluster: Cluster | None = None                                # mode flanneld
    keys: Path | None = None          # a temp directory: the mode's keys and certificates
    devices: list[str] = field(default_factory=list)         # wireguard-go's, per node


def ip(netns: str, *args: str) -> None:
    run("ip", "-n", netns, *args)


def build(ns: Namespaces, mode: str) -> Topology:
    """Two nodes on a veth underlay, a pod on each; then the mode's data plane."""
    nodes = [ns.make("pfbtn"), ns.make("pfbtn")]
    pods = [ns.make("pfbtp"), ns.make("pfbtp")]
    ip(nodes[0], "link", "add", "eth0", "mtu", str(UNDERLAY_MTU), "type", "veth", "peer",
       "name", "eth0", "mtu", str(UNDERLAY_MTU), "netns", nodes[1])
    for i, (node, pod) in enumerate(zip(nodes, pods, strict=True)):
        ip(node, "addr", "add", f"{UNDERLAY[i]}/24", "dev", "eth0")
        ip(node, "link", "set", "eth0", "up")
        run("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=node)
        gw = SUBNETS[i].network_address + 1
        ip(node, "link", "add", "vpod", "mtu", str(POD_MTU[mode]), "type", "veth", "peer",
           "name", "eth0", "mtu", str(POD_MTU[mode]), "netns", pod)
        ip(node, "addr", "add", f"{gw}/{SUBNETS[i].prefixlen}", "dev", "vpod")
        ip(node, "link", "set", "vpod", "up")
        ip(pod, "addr", "add", f"{SUBNETS[i].network_address + 2}/{SUBNETS[i].prefixlen}",
           "dev", "eth0")
        ip(pod, "link", "set", "eth0", "up")
        ip(pod, "route", "add", "default", "via", str(gw))
    topo = Topology(mode, nodes, pods, [s.network_address + 2 for s in SUBNETS])
    if mode == "vxlan":
        _vxlan(topo)
    elif mode == "host-gw":
        for i, node in enumerate(nodes):
            ip(node, "route", "add", str(SUBNETS[1 - i]), "via", str(UNDERLAY[1 - i]))
    return topo


def build_cluster() -> Topology:
    """Two nodes running flanneld with etcd, a pod on each through the CNI plugin."""
    cluster = Cluster(nodes=2, underlay=91)
    try:
        cluster.start()
        pods = [cluster.add_pod(node) for node in cluster.nodes]
    except BaseException:
        cluster.teardown()
        raise
    return Topology("flanneld", [n.netns for n in cluster.nodes], [p.netns for p in pods],
                    [IPv4Address(p.ip) for p in pods], cluster=cluster)


def _vxlan(topo: Topology) -> None:
    for i, node in enumerate(topo.nodes):
        ip(node, "link", "add", "vxlan0", "address", VTEP_MACS[i], "mtu",
           str(UNDERLAY_MTU - 50), "type", "vxlan", "id", "1", "local", str(UNDERLAY[i]),
           "remote", str(UNDERLAY[1 - i]), "dstport", "4789", "dev", "eth0")
        ip(node, "addr", "add", f"{SUBNETS[i].network_address}/32", "dev", "vxlan0")
        ip(node, "link", "set", "vxlan0", "up")
        peer_vtep = str(SUBNETS[1 - i].network_address)
        ip(node, "neigh", "add", peer_vtep, "lladdr", VTEP_MACS[1 - i], "dev", "vxlan0",
           "nud", "permanent")
        ip(node, "route", "add", str(SUBNETS[1 - i]), "via", peer_vtep, "dev", "vxlan0",
           "onlink")


def start_udp_nodes(topo: Topology, timeout: float, root: Path = ROOT,
                    extra: tuple[str, ...] = ()) -> None:
    """bench.udp_node on each node, from the checkout at `root` (its own flanneld), with
    `extra` arguments."""
    for i, node in enumerate(topo.nodes):
        cmd = ["ip", "netns", "exec", node, sys.executable, "-m", "bench.udp_node",
               "--underlay", str(UNDERLAY[i]), "--subnet", str(SUBNETS[i]),
               "--peer", f"{SUBNETS[1 - i]}={UNDERLAY[1 - i]}", "--network", str(NETWORK),
               "--mtu", str(UNDERLAY_MTU), "--offload", UDP_NODE_OFFLOAD[topo.mode], *extra]
        proc = subprocess.Popen(cmd, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        topo.procs.append(proc)
        line = _readline(proc, timeout)
        if line != "ready":
            raise BenchError(f"udp_node in {node} did not start: {line!r} "
                             f"{_stderr_of(proc)}")


def openvpn_args(i: int, certs: pki.NodeFiles | None = None) -> list[str]:
    """Node i's openvpn: peer to peer over UDP, no DCO; without `certs` cleartext (no TLS,
    no key, mode openvpn), with them TLS (node A the server) and AES-256-GCM (openvpn-gcm)."""
    mode = "openvpn" if certs is None else "openvpn-gcm"
    args = ["openvpn", "--disable-dco", "--dev", OPENVPN_TUN, "--dev-type", "tun",
            "--proto", "udp", "--local", str(UNDERLAY[i]), "--remote", str(UNDERLAY[1 - i]),
            "--port", str(OPENVPN_PORT), "--ifconfig", str(SUBNETS[i].network_address),
            str(SUBNETS[1 - i].network_address)]
    if certs is None:
        args += ["--cipher", "none", "--auth", "none"]
    else:
        args += ["--tls-server", "--dh", "none", "--remote-cert-tls", "client"] if i == 0 else \
                ["--tls-client", "--remote-cert-tls", "server"]
        args += ["--ca", str(certs.ca), "--cert", str(certs.cert), "--key", str(certs.key),
                 "--verify-x509-name", OPENVPN_NAMES[1 - i], "name",
                 "--data-ciphers", OPENVPN_GCM, "--data-ciphers-fallback", OPENVPN_GCM]
    return args + ["--tun-mtu", str(POD_MTU[mode]), "--mtu-disc", "yes", "--mssfix", "0",
                   "--rcvbuf", str(RCVBUF), "--verb", "3"]


def start_openvpn(topo: Topology, timeout: float) -> None:
    """An openvpn per node (mode openvpn or openvpn-gcm), its tun up, a route to the peer's
    subnet through it; returns once a ping from pod A reaches pod B."""
    certs: list[pki.NodeFiles | None] = [None, None]
    if topo.mode == "openvpn-gcm":
        topo.keys = Path(tempfile.mkdtemp(prefix="pfbt"))
        issued = pki.issue(topo.keys, OPENVPN_NAMES)
        certs = [issued[name] for name in OPENVPN_NAMES]
    for i, node in enumerate(topo.nodes):
        log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (openvpn writes it; closed at the end)
        topo.logs.append(log)
        topo.procs.append(subprocess.Popen(["ip", "netns", "exec", node,
                                            *openvpn_args(i, certs[i])],
                                           stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT))
    for i, (node, proc, log) in enumerate(zip(topo.nodes, topo.procs, topo.logs, strict=True)):
        # in TLS mode the data channel's cipher is logged just after this line
        ready = ("Initialization Sequence Completed",) + (
            () if certs[i] is None else ("Data Channel: cipher '",))
        _wait_for(partial(_logged, log, ready), proc, log, f"openvpn in {node}", timeout)
        if certs[i] is not None and not _gcm_data_channel(_output(log)):
            raise BenchError(f"openvpn in {node} did not set up {OPENVPN_GCM}: "
                             f"{_output(log)[-2000:]}")
        ip(node, "route", "add", str(SUBNETS[1 - i]), "dev", OPENVPN_TUN)
    wait_reachable(topo, timeout)


def _logged(log: IO[bytes], texts: tuple[str, ...]) -> bool:
    output = _output(log)
    return all(text in output for text in texts)


def _gcm_data_channel(log: str) -> bool:
    """Whether openvpn's log says its data channel uses AES-256-GCM (and nothing else)."""
    ciphers = re.findall(r"Data Channel: cipher '([^']*)'", log)
    return bool(ciphers) and all(c == OPENVPN_GCM for c in ciphers)


def start_wireguard(topo: Topology, timeout: float) -> None:
    """A wireguard-go per node, configured with wg: keys, port, the peer; its device up
    with the pod MTU, a route to the peer's subnet through it; returns once a ping from
    pod A reaches pod B."""
    topo.keys = Path(tempfile.mkdtemp(prefix="pfbt"))
    keys = [pki.wireguard_key(topo.keys, f"node{i}") for i in range(len(topo.nodes))]
    # foreground, and no banner about the kernel module
    env = {**os.environ, "WG_PROCESS_FOREGROUND": "1"}
    for node in topo.nodes:
        topo.devices.append(unique("pfwg"))
        log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (wireguard-go writes it; closed at the end)
        topo.logs.append(log)
        topo.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", node, "wireguard-go", "-f", topo.devices[-1]], env=env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
    for i, (node, dev, proc, log) in enumerate(zip(topo.nodes, topo.devices, topo.procs,
                                                   topo.logs, strict=True)):
        sock = WG_SOCKETS / f"{dev}.sock"
        _wait_for(sock.exists, proc, log, f"wireguard-go in {node}", timeout)
        run("wg", "set", dev, "private-key", str(keys[i].private_file),
            "listen-port", str(WG_PORT), "peer", keys[1 - i].public,
            "endpoint", f"{UNDERLAY[1 - i]}:{WG_PORT}", "allowed-ips", str(SUBNETS[1 - i]),
            netns=node)
        ip(node, "link", "set", dev, "mtu", str(POD_MTU["wireguard-go"]))
        ip(node, "addr", "add", f"{SUBNETS[i].network_address}/32", "dev", dev)
        ip(node, "link", "set", dev, "up")
        ip(node, "route", "add", str(SUBNETS[1 - i]), "dev", dev)
    wait_reachable(topo, timeout)


def _wait_for(ready: Callable[[], bool], proc: subprocess.Popen[Any], log: IO[bytes],
              what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"{what} did not come up: {_output(log)[-2000:]}")
        time.sleep(0.05)


def check_underlay(topo: Topology, timeout: float) -> int:
    """The largest datagram node A sends to node B while a DF ping of the pod MTU goes from
    pod A to pod B; a BenchError if any is a fragment or does not fit the underlay MTU."""
    mtu = POD_MTU[topo.mode]

    def ping() -> None:
        done = run("ping", "-c", "1", "-W", "2", "-M", "do", "-s", str(mtu - 28),
                   str(topo.pod_ips[1]), netns=topo.pods[0], check=False, timeout=timeout)
        if done.returncode:
            raise BenchError(f"a {mtu}-byte ping does not cross {topo.mode}: "
                             f"{done.stdout[-500:]}{done.stderr[-500:]}")

    sent = [s for s in underlay.sent_during(topo.nodes[0], "eth0", ping)
            if s.dst == UNDERLAY[1] and s.proto == underlay.IPPROTO_UDP]
    if not sent or any(s.fragment for s in sent) or max(s.length for s in sent) > UNDERLAY_MTU:
        raise BenchError(f"{topo.mode}: a {mtu}-byte pod packet does not fit the underlay "
                         f"MTU {UNDERLAY_MTU}: {sent}")
    largest = max(s.length for s in sent)
    if largest < mtu:
        raise BenchError(f"{topo.mode}: no datagram of a {mtu}-byte pod packet on the "
                         f"underlay: {sent}")
    return largest


def _output(log: IO[bytes]) -> str:
    """What a child wrote to `log` so far (read without moving the offset it writes at)."""
    fd = log.fileno()
    return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")


def wait_reachable(topo: Topology, timeout: float) -> None:
    """Until a ping from pod A reaches pod B."""
    deadline = time.monotonic() + timeout
    while run("ping", "-c", "1", "-W", "1", str(topo.pod_ips[1]), netns=topo.pods[0],
              check=False, timeout=5).returncode:
        if time.monotonic() > deadline:
            raise BenchError(f"pod B unreachable over {topo.mode} after {timeout:.0f} s")
        time.sleep(0.2)


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """One line of `proc`'s stdout, waiting at most `timeout` seconds."""
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return "<timeout>"
    return proc.stdout.readline().strip()


def _stderr_of(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        return ""
    assert proc.stderr is not None
    return proc.stderr.read()[-2000:]


def udp_report(topo: Topology, timeout: float = 5) -> list[dict[str, Any]]:
    """Each udp_node's counters and CPU seconds (it prints them on SIGUSR1)."""
    out = []
    for proc in topo.procs:
        if proc.poll() is not None:
            raise BenchError(f"udp_node exited with {proc.returncode}: {_stderr_of(proc)}")
        proc.send_signal(signal.SIGUSR1)
        line = _readline(proc, timeout)
        try:
            out.append(json.loads(line))
        except ValueError:
            raise BenchError(f"udp_node answered {line!r} to SIGUSR1") from None
    return out


def teardown(topo: Topology) -> None:
    """Stops what `topo` started and removes its files (its namespaces are the caller's)."""
    stop_procs(topo.procs)
    for log in topo.logs:
        log.close()
    if topo.cluster is not None:
        topo.cluster.teardown()
    for dev in topo.devices:      # left behind if wireguard-go did not exit cleanly
        (WG_SOCKETS / f"{dev}.sock").unlink(missing_ok=True)
    if topo.keys is not None:
        shutil.rmtree(topo.keys, ignore_errors=True)


def stop_procs(procs: list[subprocess.Popen[Any]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --- measurement ----------------------------------------------------------------------

@dataclass
class Sample:
    mode: str
    round: int
    tcp1_mbps: float         # TCP, 1 stream: receiver Mbit/s
    retransmits: int         # TCP, 1 stream: the sender's
    cpu_client: float        # TCP, 1 stream: iperf3's host_total, % of one CPU
    cpu_server: float        # iperf3's remote_total
    tcp4_mbps: float         # TCP, 4 streams: receiver Mbit/s
    udp_mbps: float          # UDP at UDP_RATE offered: received Mbit/s
    udp_loss_pct: float      # and the datagrams lost, %
    rtt_ms: float            # ping pod A -> pod B, median
    pps: float | None = None                  # pyflannel, TCP 1: packets/s node A tun -> udp
    tunnel_cpu: list[float] | None = None     # TCP 1: % of one CPU per tunnel process
    cpu_s_per_gbit: float | None = None       # TCP 1: their CPU seconds per Gbit received


@dataclass
class Probe:
    """The tunnel processes at one instant."""
    cpu_seconds: list[float]        # per process
    tx_packets: float | None        # node A tun -> udp (pyflannel modes)


def iperf(topo: Topology, seconds: int, extra_timeout: float, *args: str) -> dict[str, Any]:
    """The "end" of `iperf3 -c -J <args>` in pod A against a one-off server in pod B."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", topo.pods[1], "iperf3", "-s", "-1", "-p", str(IPERF_PORT),
         "-B", str(topo.pod_ips[1])],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_listening(topo.pods[1], server)
        done = run("iperf3", "-c", str(topo.pod_ips[1]), "-p", str(IPERF_PORT), "-t",
                   str(seconds), "-J", "--connect-timeout", "3000", *args, netns=topo.pods[0],
                   check=False, timeout=seconds + extra_timeout)
        try:
            result = json.loads(done.stdout)
        except ValueError:
            result = {"error": done.stdout[-500:] + done.stderr[-500:]}
        if "error" in result:
            raise BenchError(f"iperf3 {' '.join(args)} in {topo.mode}: {result['error']}")
        end: dict[str, Any] = result["end"]
        return end
    finally:
        stop_procs([server])


def _wait_listening(pod: str, server: subprocess.Popen[str], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(f"iperf3 server exited: {_stderr_of(server)}")
        listening = run("ss", "-Hltn", f"sport = :{IPERF_PORT}", netns=pod, timeout=5).stdout
        if listening.strip():
            return
        time.sleep(0.05)
    raise BenchError(f"iperf3 server in {pod} is not listening after {timeout:.0f} s")


def ping_rtt(topo: Topology, timeout: float) -> float:
    """Median RTT in ms of PINGS pings from pod A to pod B."""
    done = run("ping", "-c", str(PINGS), "-i", str(PING_INTERVAL), "-W", "1",
               str(topo.pod_ips[1]), netns=topo.pods[0], check=False, timeout=timeout)
    rtts = [float(t) for t in re.findall(r"time=([\d.]+) ms", done.stdout)]
    if not rtts:
        raise BenchError(f"no ping reply in {topo.mode}: {done.stdout[-500:]}"
                         f"{done.stderr[-500:]}")
    return statistics.median(rtts)


def cpu_seconds(proc: subprocess.Popen[Any] | None) -> float:
    """utime + stime of a running process, from /proc/<pid>/stat."""
    if proc is None or proc.poll() is not None:
        raise BenchError("a tunnel process (openvpn, wireguard-go or flanneld) exited during "
                         "the run")
    stat = Path(f"/proc/{proc.pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()      # from field 3 (state) on
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _daemon_tx_packets(topo: Topology) -> float:
    assert topo.cluster is not None
    return topo.cluster.nodes[0].metrics().get("flanneld_udp_tx_packets_total", 0.0)


def probe(topo: Topology) -> Probe | None:
    """The tunnel processes' CPU seconds and node A's sent packets; None in kernel modes."""
    if topo.mode in UDP_NODE_OFFLOAD:
        reports = udp_report(topo)
        if not all(r["alive"] for r in reports):
            raise BenchError(f"a udp backend died: {reports}")
        return Probe([r["cpu_seconds"] for r in reports], reports[0]["tx_packets"])
    if topo.mode == "flanneld":
        assert topo.cluster is not None
        return Probe([cpu_seconds(n.proc) for n in topo.cluster.nodes],
                     _daemon_tx_packets(topo))
    if topo.mode in REFERENCES:
        return Probe([cpu_seconds(p) for p in topo.procs], None)
    return None


def measure(topo: Topology, rnd: int, seconds: int, extra_timeout: float) -> Sample:
    """One mode in one round: RTT, TCP 1 stream (and the tunnel's CPU), TCP 4 streams, UDP."""
    rtt = ping_rtt(topo, extra_timeout)
    before = probe(topo)
    tcp1 = iperf(topo, seconds, extra_timeout)
    after = probe(topo)
    tcp4 = iperf(topo, seconds, extra_timeout, "-P", "4")
    udp = iperf(topo, seconds, extra_timeout, "-u", "-b", UDP_RATE, "-l", str(UDP_LEN))
    received = tcp1["sum_received"]
    sample = Sample(topo.mode, rnd, received["bits_per_second"] / 1e6,
                    tcp1["sum_sent"].get("retransmits", 0),
                    tcp1["cpu_utilization_percent"]["host_total"],
                    tcp1["cpu_utilization_percent"]["remote_total"],
                    tcp4["sum_received"]["bits_per_second"] / 1e6,
                    udp["sum_received"]["bits_per_second"] / 1e6,
                    udp["sum_received"]["lost_percent"], rtt)
    if before is not None and after is not None:
        _tunnel_figures(sample, before, after, received["seconds"], received["bytes"] * 8e-9)
    return sample


def _tunnel_figures(sample: Sample, before: Probe, after: Probe, seconds: float,
                    gbits: float) -> None:
    """CPU and packet rates over a test of `seconds` that moved `gbits` (the processes
    idle outside it, so the test's duration is the denominator)."""
    used = [a - b for a, b in zip(after.cpu_seconds, before.cpu_seconds, strict=True)]
    sample.tunnel_cpu = [100 * u / seconds for u in used]
    sample.cpu_s_per_gbit = sum(used) / gbits if gbits else None
    if before.tx_packets is not None and after.tx_packets is not None:
        sample.pps = (after.tx_packets - before.tx_packets) / seconds


# --- report -----------------------------------------------------------------------------

FIGURES = ("tcp1_mbps", "retransmits", "cpu_client", "cpu_server", "tcp4_mbps", "udp_mbps",
           "udp_loss_pct", "rtt_ms")


def _median(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def summary(samples: list[Sample]) -> dict[str, Any]:
    """Medians per mode, the TCP 1-stream ratios of medians pyflannel/vxlan and
    pyflannel/host-gw, and against each reference measured (`vs`, by reference) each
    pyflannel mode and each later reference per round, with the medians of those ratios;
    `vs_openvpn` is the pyflannel modes' part of vs["openvpn"]. Pure: no I/O."""
    modes = {mode: _mode_summary([s for s in samples if s.mode == mode])
             for mode in MODES if any(s.mode == mode for s in samples)}
    ratios: dict[str, float] = {}
    ours_present = [m for m in PYFLANNEL if m in modes]
    for ours in ours_present:
        for other in ("vxlan", "host-gw"):
            if other in modes and modes[other]["tcp1_mbps_median"]:
                ratios[f"{ours}/{other}"] = (modes[ours]["tcp1_mbps_median"]
                                             / modes[other]["tcp1_mbps_median"])
    refs = [m for m in REFERENCES if m in modes]
    vs = {ref: {mode: per_round_ratios(samples, mode, ref)
                for mode in ours_present + refs[refs.index(ref) + 1:]}
          for ref in refs}
    vs_openvpn = {mode: r for mode, r in vs.get("openvpn", {}).items() if mode in PYFLANNEL}
    return {"modes": modes, "ratios_of_medians": ratios, "vs_openvpn": vs_openvpn, "vs": vs}


def _mode_summary(mine: list[Sample]) -> dict[str, Any]:
    entry: dict[str, Any] = {f"{f}_median": _median(getattr(s, f) for s in mine) for f in FIGURES}
    entry["tcp1_mbps_rounds"] = [round(s.tcp1_mbps, 1) for s in mine]
    with_cpu = [s.tunnel_cpu for s in mine if s.tunnel_cpu]
    entry["tunnel_cpu_median"] = ([_median(c[i] for c in with_cpu)
                                   for i in range(len(with_cpu[0]))] if with_cpu else None)
    entry["cpu_s_per_gbit_median"] = _median(s.cpu_s_per_gbit for s in mine)
    entry["pps_median"] = _median(s.pps for s in mine)
    return entry


def per_round_ratios(samples: list[Sample], ours: str, ref: str) -> dict[str, Any]:
    """For each of COMPARED: ours/ref in every round both ran (a round where ref's figure
    is 0 is left out), and the median of those ratios."""
    refs = {s.round: s for s in samples if s.mode == ref}
    pairs = [(s, refs[s.round]) for s in samples if s.mode == ours and s.round in refs]
    out = {}
    for figure in COMPARED:
        per_round = [getattr(s, figure) / getattr(r, figure) for s, r in pairs
                     if getattr(r, figure)]
        out[figure] = {"median": _median(per_round), "rounds": per_round}
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def sample_line(s: Sample) -> str:
    cpu = ("" if s.tunnel_cpu is None else
           f", tunnel CPU {'/'.join(f'{c:.0f}%' for c in s.tunnel_cpu)} "
           f"{_fmt(s.cpu_s_per_gbit, '.2f')} CPU-s/Gbit")
    pps = "" if s.pps is None else f", {s.pps:.0f} pps"
    return (f"round {s.round} {s.mode:12} TCP1 {s.tcp1_mbps:7.1f} Mbit/s (retr {s.retransmits})"
            f", TCP4 {s.tcp4_mbps:7.1f}, UDP {s.udp_mbps:6.1f} (loss {s.udp_loss_pct:.1f}%)"
            f", RTT {s.rtt_ms:.3f} ms, iperf3 CPU client {s.cpu_client:.0f}% server "
            f"{s.cpu_server:.0f}%{cpu}{pps}")


def print_summary(result: dict[str, Any], rounds: int, seconds: int) -> None:
    print(f"\npod to pod, iperf3 -t {seconds} (UDP: -b {UDP_RATE} -l {UDP_LEN}), ping "
          f"{PINGS} x {PING_INTERVAL * 1000:.0f} ms; median of {rounds} round(s), "
          f"{os.cpu_count()} CPUs")
    print(f"{'mode':12} {'TCP1':>7} {'retr':>5} {'TCP4':>7} {'UDP rx':>7} {'loss%':>6} "
          f"{'RTT ms':>7} {'cl%':>4} {'sv%':>4} {'tunnel CPU%':>11} {'CPU-s/Gb':>8}   TCP1 runs")
    for mode, e in result["modes"].items():
        cpu = "/".join(f"{c:.0f}" for c in e["tunnel_cpu_median"] or []) or "-"
        print(f"{mode:12} {e['tcp1_mbps_median']:7.1f} {e['retransmits_median']:5.0f} "
              f"{e['tcp4_mbps_median']:7.1f} {e['udp_mbps_median']:7.1f} "
              f"{e['udp_loss_pct_median']:6.1f} {e['rtt_ms_median']:7.3f} "
              f"{e['cpu_client_median']:4.0f} {e['cpu_server_median']:4.0f} {cpu:>11} "
              f"{_fmt(e['cpu_s_per_gbit_median'], '8.2f'):>8}   {e['tcp1_mbps_rounds']}")
    for mode, e in result["modes"].items():
        if e["pps_median"] is not None:
            print(f"{mode}: {e['pps_median']:.0f} packets/s node A tun->udp (TCP1)")
    for pair, ratio in result["ratios_of_medians"].items():
        print(f"{pair} (TCP1, ratio of medians): {ratio:.3f}")
    for ref, table in result["vs"].items():
        if not table:
            continue
        print(f"mode/{ref}, median of per-round ratios (higher is better; "
              "RTT: lower is better)")
        print(f"{'mode':12} " + " ".join(f"{f:>9}" for f in COMPARED))
        for mode, r in table.items():
            print(f"{mode:12} " + " ".join(f"{_fmt(r[f]['median'], '9.3f'):>9}"
                                           for f in COMPARED))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="rounds of all modes (default 5)")
    p.add_argument("--seconds", type=int, default=5, help="iperf3 -t per run (default 5)")
    p.add_argument("--modes", default=",".join(m for m in MODES if m != "udp-baseline"),
                   help=f"comma-separated subset of {','.join(MODES)}")
    p.add_argument("--timeout", type=float, default=20,
                   help="seconds an iperf3 run may take beyond --seconds, and the pings "
                        "of a mode (default 20)")
    p.add_argument("--baseline", type=Path, metavar="DIR",
                   help="a checkout of another commit: mode udp-baseline runs its udp backend "
                        "(offloads on) beside this one's, for before/after figures")
    p.add_argument("--json", action="store_true",
                   help="print the summary and samples as JSON (the progress goes to stderr)")
    args = p.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if args.baseline is not None and "udp-baseline" not in modes:
        modes.append("udp-baseline")
    if not set(modes) <= set(MODES) or not modes:
        p.error(f"--modes: choose from {', '.join(MODES)}")
    if ("udp-baseline" in modes) != (args.baseline is not None) or (
            args.baseline is not None and not (args.baseline / "bench" / "udp_node.py").is_file()):
        p.error("mode udp-baseline needs --baseline DIR, a checkout with bench/udp_node.py")
    if not 1 <= args.rounds <= 50 or not 1 <= args.seconds <= 60:
        p.error("--rounds must be 1..50 and --seconds 1..60")
    if os.geteuid() != 0:
        p.error("run as root: the benchmark creates network namespaces")

    signal.signal(signal.SIGTERM, _sigterm)
    ns = Namespaces()
    topos: list[Topology] = []
    samples: list[Sample] = []
    try:
        for mode in modes:
            if mode == "flanneld":
                topos.append(build_cluster())
                continue
            topos.append(build(ns, mode))
            if mode in UDP_NODE_OFFLOAD:
                sealed = ("--encryption", SEALED_WITH, "--seed", os.urandom(16).hex())
                start_udp_nodes(topos[-1], timeout=15,
                                root=args.baseline if mode == "udp-baseline" else ROOT,
                                extra=sealed if mode == "udp-sealed" else ())
            elif mode in ("openvpn", "openvpn-gcm"):
                start_openvpn(topos[-1], timeout=15)
            elif mode == "wireguard-go":
                start_wireguard(topos[-1], timeout=15)
            if mode in REFERENCES or mode == "udp-sealed":
                size = check_underlay(topos[-1], args.timeout)
                print(f"{mode}: a {POD_MTU[mode]}-byte pod packet crosses the underlay as a "
                      f"{size}-byte datagram (underlay MTU {UNDERLAY_MTU})",
                      file=sys.stderr if args.json else sys.stdout, flush=True)
        for r in range(args.rounds):
            order = topos[r % len(topos):] + topos[:r % len(topos)]
            for topo in order:
                samples.append(measure(topo, r + 1, args.seconds, args.timeout))
                print(sample_line(samples[-1]), file=sys.stderr if args.json else sys.stdout,
                      flush=True)
    except (KeyboardInterrupt, Interrupted):
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    except (BenchError, subprocess.SubprocessError) as e:
        print(f"benchmark failed: {e}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # finish the cleanup
        for topo in topos:
            teardown(topo)
        ns.cleanup()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    result = summary(samples)
    if args.json:
        print(json.dumps({"summary": result, "samples": [vars(s) for s in samples]}, indent=2))
    else:
        print_summary(result, args.rounds, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
