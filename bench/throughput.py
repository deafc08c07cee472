"""Pod-to-pod TCP throughput across two nodes: pyflannel (the whole daemon, and its udp
backend alone) against kernel VXLAN and plain routes (host-gw).

Run as root:  python -m bench.throughput [--rounds N] [--seconds S] [--json]

Mode flanneld is what a cluster runs: etcd on an underlay bridge, two nodes each running
the installed `flanneld` (lab.cluster), a pod on each added through the installed CNI
plugin (veth onto the bridge cni0, pod MTU 1472). The other modes share one topology
builder: two node namespaces joined by a veth underlay (MTU 1500), each with a pod
namespace on a veth whose node end is the pod's gateway. Per mode the nodes get:

- udp:     each node's UdpBackend in its own process (`bench.udp_node`, started with
           `ip netns exec`), as on real nodes; pod MTU 1472 (underlay - 28).
- vxlan:   a kernel vxlan device per node (VNI 1, port 4789) and, as flannel's vxlan backend
           does, a route `<peer subnet> via <peer vtep> dev vxlan0 onlink` with a static
           neighbour; pod MTU 1450 (underlay - 50).
- host-gw: a route `<peer subnet> via <peer underlay IP>`; pod MTU 1500.

A round runs `iperf3 -c` in pod A against a one-off `iperf3 -s -1` in pod B for each mode,
in an order that rotates every round. Figures: receiver Mbit/s, sender retransmits and
iperf3's CPU figures per run; for udp also the packets per second through the backends and
their processes' CPU. Medians over the rounds, and the ratios pyflannel/vxlan and
pyflannel/host-gw of the medians.

Everything lives in namespaces this run creates (unique `pfbt...` names); they and every
process the run started are removed at the end, also on failure, Ctrl-C or SIGTERM.
Nothing is added to the namespace the driver runs in. Every subprocess has a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from lab.cluster import Cluster
from lab.netns import Namespaces, run

MODES = ("flanneld", "udp", "vxlan", "host-gw")
PYFLANNEL = ("flanneld", "udp")
UNDERLAY_MTU = 1500
POD_MTU = {"udp": UNDERLAY_MTU - 28, "vxlan": UNDERLAY_MTU - 50, "host-gw": UNDERLAY_MTU}
NETWORK = IPv4Network("10.244.0.0/16")
SUBNETS = (IPv4Network("10.244.1.0/24"), IPv4Network("10.244.2.0/24"))
UNDERLAY = (IPv4Address("192.168.90.1"), IPv4Address("192.168.90.2"))
VTEP_MACS = ("02:00:0a:f4:01:00", "02:00:0a:f4:02:00")
IPERF_PORT = 5201
ROOT = Path(__file__).resolve().parents[1]


class BenchError(RuntimeError):
    pass


class Interrupted(BaseException):
    """SIGTERM, turned into an exception so that the cleanup runs."""


def _sigterm(*_) -> None:
    raise Interrupted()


# --- topology -------------------------------------------------------------------------

@dataclass
class Topology:
    mode: str
    nodes: list[str]
    pods: list[str]
    pod_ips: list[IPv4Address]
    procs: list[subprocess.Popen] = field(default_factory=list)   # udp_node per node
    cluster: Cluster | None = None                                # mode flanneld


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


def start_udp_nodes(topo: Topology, timeout: float) -> None:
    for i, node in enumerate(topo.nodes):
        cmd = ["ip", "netns", "exec", node, sys.executable, "-m", "bench.udp_node",
               "--underlay", str(UNDERLAY[i]), "--subnet", str(SUBNETS[i]),
               "--peer", f"{SUBNETS[1 - i]}={UNDERLAY[1 - i]}", "--network", str(NETWORK),
               "--mtu", str(UNDERLAY_MTU)]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        topo.procs.append(proc)
        line = _readline(proc, timeout)
        if line != "ready":
            raise BenchError(f"udp_node in {node} did not start: {line!r} "
                             f"{_stderr_of(proc)}")


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    """One line of `proc`'s stdout, waiting at most `timeout` seconds."""
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return "<timeout>"
    return proc.stdout.readline().strip()


def _stderr_of(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        return ""
    assert proc.stderr is not None
    return proc.stderr.read()[-2000:]


def udp_report(topo: Topology, timeout: float = 5) -> list[dict]:
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


def stop_procs(procs: list[subprocess.Popen]) -> None:
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
    mbps: float
    retransmits: int
    cpu_client: float        # iperf3's host_total, % of one CPU
    cpu_server: float        # iperf3's remote_total
    pps: float | None = None             # udp: packets/s through node A's tun -> udp path
    backend_cpu: list[float] | None = None   # udp: % of one CPU per udp_node process


def iperf(topo: Topology, seconds: int, extra_timeout: float) -> Sample:
    server = subprocess.Popen(
        ["ip", "netns", "exec", topo.pods[1], "iperf3", "-s", "-1", "-p", str(IPERF_PORT),
         "-B", str(topo.pod_ips[1])],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_listening(topo.pods[1], server)
        done = run("iperf3", "-c", str(topo.pod_ips[1]), "-p", str(IPERF_PORT), "-t",
                   str(seconds), "-J", "--connect-timeout", "3000", netns=topo.pods[0],
                   check=False, timeout=seconds + extra_timeout)
        try:
            result = json.loads(done.stdout)
        except ValueError:
            result = {"error": done.stdout[-500:] + done.stderr[-500:]}
        if "error" in result:
            raise BenchError(f"iperf3 in {topo.mode}: {result['error']}")
        end = result["end"]
        return Sample(topo.mode, end["sum_received"]["bits_per_second"] / 1e6,
                      end["sum_sent"].get("retransmits", 0),
                      end["cpu_utilization_percent"]["host_total"],
                      end["cpu_utilization_percent"]["remote_total"])
    finally:
        stop_procs([server])


def _wait_listening(pod: str, server: subprocess.Popen, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(f"iperf3 server exited: {_stderr_of(server)}")
        listening = run("ss", "-Hltn", f"sport = :{IPERF_PORT}", netns=pod, timeout=5).stdout
        if listening.strip():
            return
        time.sleep(0.05)
    raise BenchError(f"iperf3 server in {pod} is not listening after {timeout:.0f} s")


def _daemon_tx_packets(topo: Topology) -> float:
    assert topo.cluster is not None
    return topo.cluster.nodes[0].metrics().get("flanneld_udp_tx_packets_total", 0.0)


def measure(topo: Topology, seconds: int, extra_timeout: float) -> Sample:
    if topo.mode == "flanneld":
        before, t0 = _daemon_tx_packets(topo), time.monotonic()
        sample = iperf(topo, seconds, extra_timeout)
        sample.pps = (_daemon_tx_packets(topo) - before) / (time.monotonic() - t0)
        return sample
    if topo.mode != "udp":
        return iperf(topo, seconds, extra_timeout)
    before, t0 = udp_report(topo), time.monotonic()
    sample = iperf(topo, seconds, extra_timeout)
    after, elapsed = udp_report(topo), time.monotonic() - t0
    if not all(r["alive"] for r in after):
        raise BenchError(f"a udp backend died: {after}")
    sample.pps = (after[0]["tx_packets"] - before[0]["tx_packets"]) / elapsed
    sample.backend_cpu = [100 * (a["cpu_seconds"] - b["cpu_seconds"]) / elapsed
                          for a, b in zip(after, before, strict=True)]
    return sample


# --- report -----------------------------------------------------------------------------

def summary(samples: list[Sample]) -> dict:
    out: dict = {}
    for mode in MODES:
        mine = [s for s in samples if s.mode == mode]
        if not mine:
            continue
        entry = {
            "mbps_median": statistics.median(s.mbps for s in mine),
            "mbps": [round(s.mbps, 1) for s in mine],
            "retransmits_median": statistics.median(s.retransmits for s in mine),
            "iperf_cpu_client_median": statistics.median(s.cpu_client for s in mine),
            "iperf_cpu_server_median": statistics.median(s.cpu_server for s in mine),
        }
        if mode in PYFLANNEL:
            entry["pps_median"] = statistics.median(s.pps or 0 for s in mine)
        if mode == "udp":
            entry["backend_cpu_median"] = [
                statistics.median(s.backend_cpu[i] for s in mine if s.backend_cpu)
                for i in range(2)]
        out[mode] = entry
    for ours in PYFLANNEL:
        for other in ("vxlan", "host-gw"):
            if ours in out and other in out and out[other]["mbps_median"]:
                out[f"ratio_{ours}/{other}"] = (out[ours]["mbps_median"]
                                                / out[other]["mbps_median"])
    return out


def print_summary(result: dict, rounds: int, seconds: int) -> None:
    print(f"\npod-to-pod TCP, iperf3 -t {seconds}, median of {rounds} round(s), "
          f"{os.cpu_count()} CPUs")
    print(f"{'mode':8} {'Mbit/s':>9} {'retr':>6} {'cpu cl%':>8} {'cpu sv%':>8}   runs")
    for mode in MODES:
        if mode not in result:
            continue
        e = result[mode]
        print(f"{mode:8} {e['mbps_median']:9.1f} {e['retransmits_median']:6.0f} "
              f"{e['iperf_cpu_client_median']:8.1f} {e['iperf_cpu_server_median']:8.1f}   "
              f"{e['mbps']}")
    if "flanneld" in result:
        print(f"flanneld: {result['flanneld']['pps_median']:.0f} packets/s node A tun->udp")
    if "udp" in result:
        e = result["udp"]
        print(f"udp backend: {e['pps_median']:.0f} packets/s node A tun->udp; CPU of the "
              f"udp_node processes (% of one CPU): "
              f"{', '.join(f'{c:.0f}' for c in e['backend_cpu_median'])}")
    for key in sorted(k for k in result if k.startswith("ratio_")):
        ours, other = key[len("ratio_"):].split("/")
        print(f"{ours}/{other}: {result[key]:.3f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="rounds of all modes (default 3)")
    p.add_argument("--seconds", type=int, default=5, help="iperf3 -t per run (default 5)")
    p.add_argument("--modes", default=",".join(MODES),
                   help=f"comma-separated subset of {','.join(MODES)}")
    p.add_argument("--timeout", type=float, default=20,
                   help="seconds an iperf3 run may take beyond --seconds (default 20)")
    p.add_argument("--json", action="store_true", help="print the summary and samples as JSON")
    args = p.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= set(MODES) or not modes:
        p.error(f"--modes: choose from {', '.join(MODES)}")
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
            if mode == "udp":
                start_udp_nodes(topos[-1], timeout=15)
        for r in range(args.rounds):
            order = topos[r % len(topos):] + topos[:r % len(topos)]
            for topo in order:
                s = measure(topo, args.seconds, args.timeout)
                samples.append(s)
                extra = (f", {s.pps:.0f} pps, backend CPU "
                         f"{'/'.join(f'{c:.0f}%' for c in s.backend_cpu or [])}"
                         if s.pps is not None else "")
                print(f"round {r + 1} {s.mode:8} {s.mbps:9.1f} Mbit/s, retr {s.retransmits},"
                      f" iperf3 CPU client {s.cpu_client:.0f}% server {s.cpu_server:.0f}%"
                      f"{extra}", flush=True)
    except (KeyboardInterrupt, Interrupted):
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    except (BenchError, subprocess.SubprocessError) as e:
        print(f"benchmark failed: {e}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # finish the cleanup
        for topo in topos:
            stop_procs(topo.procs)
            if topo.cluster is not None:
                topo.cluster.teardown()
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
