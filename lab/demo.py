"""`make demo`: a local three-node cluster in network namespaces.

etcd on an underlay bridge, three nodes each running `flanneld` (udp backend), two pods
per node added through the pyflannel CNI executable; then a matrix of cross-node
reachability (ping) and pod-to-pod TCP throughput (iperf3), and a clean teardown.
With --keep the cluster stays up and the demo prints how to look at it; --down removes
every cluster kept that way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lab.cluster import HEALTHZ_PORT, Cluster, Pod, flanneld_binary
from lab.kept import STATE_DIR, remove_all
from lab.netns import run
from lab.plugin import ping, plugin_binary


def throughput(src: Pod, dst: Pod, seconds: int) -> float | None:
    """Mbit/s of one bounded iperf3 run from src to dst; None if it failed."""
    run("iperf3", "-s", "-1", "-D", "--logfile", "/dev/null", netns=dst.netns, check=False)
    time.sleep(0.3)
    out = run("iperf3", "-c", dst.ip, "-t", str(seconds), "-J", "--connect-timeout", "3000",
              netns=src.netns, timeout=seconds + 30, check=False)
    if out.returncode:
        return None
    bits: float = json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"]
    return bits / 1e6


def matrix(title: str, pods: list[Pod], cell: Callable[[Pod, Pod], str]) -> None:
    width = 16
    print(f"\n{title} (rows: from, columns: to)")
    print(" " * width + "".join(f"{p.ip:>{width}}" for p in pods))
    for a in pods:
        row = [("-" if a.node is b.node else cell(a, b)) for b in pods]
        print(f"{a.ip:<{width}}" + "".join(f"{c:>{width}}" for c in row))


def how_to_look(cluster: Cluster, state: Path) -> str:
    node, pods = cluster.nodes[0], [p for n in cluster.nodes for p in n.pods]
    assert cluster.etcd is not None
    lines = [f"\nthe cluster is still up; `make down` removes it (record: {state})",
             *(f"  node {n.index}: ip netns exec {n.netns} ip route      "
               f"# subnet {n.subnet()}, log {n.log_file}" for n in cluster.nodes),
             f"  a pod:  ip netns exec {pods[0].netns} ping -c 3 {pods[-1].ip}",
             f"  etcd:   ip netns exec {cluster.hub} etcdctl --endpoints={cluster.etcd.url} "
             f"get --prefix {cluster.prefix}",
             f"  health: ip netns exec {node.netns} curl -s "
             f"http://127.0.0.1:{HEALTHZ_PORT}/healthz   # also /metrics and /leases"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--pods", type=int, default=1, help="pods per node (default 1)")
    p.add_argument("--seconds", type=int, default=2, help="iperf3 time per pair (default 2)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--keep", action="store_true", help="leave the cluster up at the end")
    mode.add_argument("--down", action="store_true",
                      help="remove the clusters left up by --keep, and stop")
    p.add_argument("--state-dir", type=Path, default=STATE_DIR,
                   help=f"where kept clusters are recorded (default {STATE_DIR})")
    args = p.parse_args(argv)
    if args.down:
        removed = remove_all(args.state_dir)
        print(f"removed {', '.join(removed)}" if removed else "no demo cluster is up")
        return 0
    failures = 0
    print(f"daemon: {flanneld_binary()}\nplugin: {plugin_binary()}")
    print(f"starting etcd and {args.nodes} nodes running flanneld ...")
    with Cluster(nodes=args.nodes) as cluster:
        for node in cluster.nodes:
            for _ in range(args.pods):
                cluster.add_pod(node)
            print(f"node {node.index}: netns {node.netns}, underlay {node.underlay_ip}, "
                  f"subnet {node.subnet()}, pods {', '.join(p.ip for p in node.pods)}")
        pods = [p for n in cluster.nodes for p in n.pods]

        def reach(a: Pod, b: Pod) -> str:
            nonlocal failures
            ok = ping(a.netns, b.ip, count=2)
            failures += not ok
            return "ok" if ok else "FAILED"

        def rate(a: Pod, b: Pod) -> str:
            nonlocal failures
            mbits = throughput(a, b, args.seconds)
            failures += mbits is None
            return "FAILED" if mbits is None else f"{mbits:.0f} Mbit/s"

        matrix("reachability across nodes (ping)", pods, reach)
        matrix(f"TCP throughput across nodes (iperf3, {args.seconds} s)", pods, rate)
        assert cluster.etcd is not None      # started with the cluster
        keys = cluster.etcd.etcdctl("get", "--prefix", "--keys-only", cluster.prefix).split()
        print("\netcd keys:\n  " + "\n  ".join(keys))
        if args.keep:
            print(how_to_look(cluster, cluster.keep(args.state_dir)))
    if not args.keep:
        print("torn down: daemons stopped, etcd stopped, namespaces removed")
    if failures:
        print(f"{failures} checks FAILED", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
