"""The CPU cost of the offload path's header logic, per 64 KiB super-packet, in this
process (no namespaces, no root): what bounds one TCP stream through the udp backend.

Run:  python -m bench.offload_cost [--repeat N]

Times, as the median of N runs each (default 200), for a 64 KiB TCP super-packet with
timestamps (MSS 1420, as through a 1500-byte underlay):
- segment:   core.gso.segment_tcp4, the sender's work (46 segments, each with its checksum)
- checks:    the receiver's per-datagram checks (accept_ipv4: header, destination, TTL)
- coalesce:  core.gro.coalesce of the 46 datagrams, each segment's checksum verified
- sum:       packet.ones_sum over the same payload, slice by slice: the checksum alone
Each also as ns per payload byte.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import time
from collections.abc import Callable

from flanneld.core.gro import coalesce
from flanneld.core.gso import segment_tcp4
from flanneld.core.packet import accept_ipv4, internet_checksum, ones_sum

MSS = 1420
OPTIONS = b"\x01\x01\x08\x0a" + struct.pack("!II", 1, 2)     # NOP NOP timestamps


def super_packet(payload: bytes) -> memoryview:
    """A TCP/IPv4 super-packet as an offloading tun hands it over."""
    thl = 20 + len(OPTIONS)
    ip = bytearray(struct.pack("!BBHHHBBHII", 0x45, 0, 20 + thl + len(payload), 1, 0x4000, 64,
                               6, 0, 0x0AF40102, 0x0AF40202))
    ip[10:12] = internet_checksum(ip).to_bytes(2, "big")
    tcp = struct.pack("!HHIIBBHHH", 40000, 5201, 1, 1, (thl // 4) << 4, 0x10, 500, 0, 0)
    return memoryview(bytearray(ip + tcp + OPTIONS + payload))


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.offload_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=200, help="runs per figure (default 200)")
    args = p.parse_args(argv)
    payload = os.urandom(65535 - 20 - 20 - len(OPTIONS))
    sp = super_packet(payload)
    parts, size = segment_tcp4(sp, MSS)
    wire = b"".join(bytes(b) for b in parts)
    datagrams = [memoryview(bytearray(wire[i:i + size])) for i in range(0, len(wire), size)]
    fresh = [bytes(d) for d in datagrams]

    def checks() -> None:
        for d, original in zip(datagrams, fresh, strict=True):
            d[:] = original                      # the TTL goes down once per run
            accept_ipv4(d, 0xFFFFFF00, 0x0AF40200)

    hl = 40 + len(OPTIONS)
    figures = {
        "segment": timed(lambda: segment_tcp4(sp, MSS), args.repeat),
        "checks": timed(checks, args.repeat),
        "coalesce": timed(lambda: coalesce(datagrams), args.repeat),
        "sum": timed(lambda: [ones_sum(sp[i:i + MSS]) for i in range(hl, len(sp), MSS)],
                     args.repeat),
    }
    print(f"64 KiB super-packet, {len(datagrams)} segments of MSS {MSS}, "
          f"median of {args.repeat} runs")
    for name, seconds in figures.items():
        print(f"{name:9} {seconds * 1e6:8.1f} us  {seconds * 1e9 / len(payload):5.2f} ns/byte")
    return 0


if __name__ == "__main__":
    sys.exit(main())
