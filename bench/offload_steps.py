"""What each offload step of the udp backend contributes: the same two-node topology as
bench/throughput.py's mode udp, with the backend run as on kernels that lack some
features (bench.udp_node --without), in interleaved rounds.

Run as root:  python -m bench.offload_steps [--rounds N] [--seconds S]

Variants, each against the plain path (offloads off):
- tso:          TUN TSO/checksum offload only: super-packets segmented in user space, each
                segment sent with its own sendmsg; receives one datagram each (coalescing
                still merges consecutive ones)
- tso+gso:      and UDP GSO: a super-packet's segments leave in one sendmsg
- tso+gso+gro:  and UDP GRO: a receive holds many datagrams (what flanneld runs)
- gso+gro:      UDP GSO and GRO without TUN TSO: MTU-sized reads, UDP trains, coalescing

Per variant and round: bench.throughput's measure (ping RTT, TCP 1 and 4 streams, UDP at
1 Gbit/s, the tunnel's CPU). The summary gives medians and, per round, the ratio to plain.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys

from bench import throughput as bt
from lab.netns import Namespaces

VARIANTS = {"plain": ("off", ""), "tso": ("on", "udp_gso,udp_gro"),
            "tso+gso": ("on", "udp_gro"), "tso+gso+gro": ("on", ""),
            "gso+gro": ("on", "tun_tso")}
FIGURES = ("tcp1_mbps", "tcp4_mbps", "udp_mbps", "rtt_ms", "cpu_s_per_gbit")


def start(ns: Namespaces, name: str) -> bt.Topology:
    offload, without = VARIANTS[name]
    topo = bt.build(ns, "udp")
    topo.mode = "udp" if offload == "on" else "udp-plain"      # what bench.throughput probes
    bt.start_udp_nodes(topo, 15, extra=("--without", without) if without else ())
    return topo


def report(samples: dict[str, list[bt.Sample]]) -> None:
    print(f"\nmedians over {len(samples['plain'])} rounds; x = median of per-round ratios "
          f"to plain (RTT and CPU: lower is better)")
    print(f"{'variant':12} " + " ".join(f"{f:>20}" for f in FIGURES))
    for name, mine in samples.items():
        cells = []
        for f in FIGURES:
            values = [getattr(s, f) for s in mine]
            ratios = [getattr(s, f) / getattr(p, f) for s, p in zip(mine, samples["plain"],
                                                                     strict=True)
                      if getattr(s, f) is not None and getattr(p, f)]
            median = statistics.median(v for v in values if v is not None)
            cells.append(f"{median:10.3g} {statistics.median(ratios):6.2f}x")
        print(f"{name:12} " + " ".join(f"{c:>20}" for c in cells))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.offload_steps", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="rounds of all variants (default 3)")
    p.add_argument("--seconds", type=int, default=4, help="iperf3 -t per run (default 4)")
    args = p.parse_args(argv)
    if not 1 <= args.rounds <= 20 or not 1 <= args.seconds <= 60:
        p.error("--rounds must be 1..20 and --seconds 1..60")
    if os.geteuid() != 0:
        p.error("run as root: the benchmark creates network namespaces")
    signal.signal(signal.SIGTERM, bt._sigterm)
    ns = Namespaces()
    topos: dict[str, bt.Topology] = {}
    samples: dict[str, list[bt.Sample]] = {name: [] for name in VARIANTS}
    try:
        for name in VARIANTS:
            topos[name] = start(ns, name)
        names = list(VARIANTS)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                sample = bt.measure(topos[name], r + 1, args.seconds, 20)
                samples[name].append(sample)
                print(f"round {r + 1} {name:12} TCP1 {sample.tcp1_mbps:7.1f} TCP4 "
                      f"{sample.tcp4_mbps:7.1f} UDP {sample.udp_mbps:6.1f} RTT "
                      f"{sample.rtt_ms:.3f}", flush=True)
    except (KeyboardInterrupt, bt.Interrupted):
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    except (bt.BenchError, subprocess.SubprocessError) as e:
        print(f"benchmark failed: {e}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for topo in topos.values():
            bt.stop_procs(topo.procs)
        ns.cleanup()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    report(samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
