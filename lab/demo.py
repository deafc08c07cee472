"""`make demo`: a local three-node cluster in network namespaces.

etcd on an underlay bridge, three nodes each running `flanneld` (udp backend), two pods
per node added through the pyflannel CNI executable; then a matrix of cross-node
reachability (ping) and pod-to-pod TCP throughput (iperf3), and a clean teardown.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from lab.cluster import Cluster, Pod
from lab.netns import run
from lab.plugin import ping


def throughput(src: Pod, dst: Pod, seconds: int) -> float | None:
    """Mbit/s of one bounded iperf3 run from src to dst; None if it failed."""
    run("iperf3", "-s", "-1", "-D", "--logfile", "/dev/null", netns=dst.netns, check=False)
    time.sleep(0.3)
    out = run("iperf3", "-c", dst.ip, "-t", str(seconds), "-J", "--connect-timeout", "3000",
              netns=src.netns, timeout=seconds + 30, check=False)
    if out.returncode:
        return None
    return json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"] / 1e6


def matrix(title: str, pods: list[Pod], cell) -> None:
    width = 16
    print(f"\n{title} (rows: from, columns: to)")
    print(" " * width + "".join(f"{p.ip:>{width}}" for p in pods))
    for a in pods:
        row = [("-" if a.node is b.node else cell(a, b)) for b in pods]
        print(f"{a.ip:<{width}}" + "".join(f"{c:>{width}}" for c in row))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--pods", type=int, default=1, help="pods per node (default 1)")
    p.add_argument("--seconds", type=int, default=2, help="iperf3 time per pair (default 2)")
    args = p.parse_args(argv)
    failures = 0
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
        keys = cluster.etcd.etcdctl("get", "--prefix", "--keys-only", cluster.prefix).split()
        print("\netcd keys:\n  " + "\n  ".join(keys))
    print("torn down: daemons stopped, etcd stopped, namespaces removed")
    if failures:
        print(f"{failures} checks FAILED", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
