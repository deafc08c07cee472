"""One node's udp backend with static routes, as its own process, for bench/throughput.py.

Run inside the node's network namespace (the driver uses `ip netns exec`):

    python -m bench.udp_node --underlay 192.168.90.1 --subnet 10.244.1.0/24 \
        --peer 10.244.2.0/24=192.168.90.2 [--mtu 1500] [--port 8285] [--network 10.244.0.0/16] \
        [--offload on|off] [--encryption aes-256-gcm --seed HEX]

Prints one line "ready" once the backend is up; on SIGUSR1 prints its counters (and this
process's CPU seconds) as one JSON line; runs until SIGTERM or SIGINT, then stops the
backend (which removes the TUN device) and exits 0.

With --encryption, each node's X25519 key and boot value are derived from the run's
--seed and its underlay address (so both nodes know each other's without etcd), and the
peers' leases advertise them, as a daemon's would.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import threading
from ipaddress import IPv4Address, IPv4Network

from flanneld.backends import udp
from flanneld.backends.udp import UdpBackend
from flanneld.backends.udp_sealed import Encryption
from flanneld.core.keys import Identity, encode_backend_data
from flanneld.core.lease import Lease, backend_data_text
from flanneld.core.routes import Routes
from flanneld.io import udp_offload

# A feature's probe, as (module, name): replaced by one that says "refused".
WITHOUT = {"tun_tso": (udp, "enable_offloads"), "udp_gso": (udp_offload, "gso_supported"),
           "udp_gro": (udp_offload, "enable_gro")}


def peer(text: str) -> Lease:
    subnet, _, public_ip = text.partition("=")
    return Lease(IPv4Network(subnet), IPv4Address(public_ip))


def identity(seed: str, underlay: IPv4Address) -> Identity:
    """A node's keys for one run: from the run's seed and the node's address."""
    material = hashlib.sha256(bytes.fromhex(seed) + underlay.packed).digest()
    boot = hashlib.sha256(b"boot" + material).digest()[:16]
    return Identity.from_private(material, boot)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.udp_node", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--underlay", type=IPv4Address, required=True, help="address to bind")
    p.add_argument("--subnet", type=IPv4Network, required=True, help="this node's subnet")
    p.add_argument("--peer", type=peer, action="append", default=[],
                   help="SUBNET=PUBLIC_IP of another node (repeatable)")
    p.add_argument("--network", type=IPv4Network, default=IPv4Network("10.244.0.0/16"))
    p.add_argument("--mtu", type=int, default=1500, help="underlay MTU")
    p.add_argument("--port", type=int, default=8285)
    p.add_argument("--tun", default="flannel0")
    p.add_argument("--offload", choices=("on", "off"), default="on",
                   help="the backend's TUN and UDP offloads (default on)")
    p.add_argument("--encryption", default=None, metavar="AEAD",
                   help="seal every datagram (aes-256-gcm or chacha20-poly1305)")
    p.add_argument("--seed", default="00", metavar="HEX",
                   help="with --encryption: the run's secret the nodes' keys come from")
    p.add_argument("--without", default="", metavar="FEATURE,...",
                   help=f"with --offload on, run as on a kernel that lacks these of "
                        f"{', '.join(WITHOUT)} (to measure what each contributes)")
    args = p.parse_args(argv)
    missing = [f for f in args.without.split(",") if f]
    if not set(missing) <= set(WITHOUT):
        p.error(f"--without: choose from {', '.join(WITHOUT)}")
    for feature in missing:
        setattr(*WITHOUT[feature], lambda *_: False)

    done = threading.Event()
    report = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGUSR1, lambda *_: report.set())

    encryption = None
    peers = args.peer
    if args.encryption:
        encryption = Encryption(identity(args.seed, args.underlay), args.encryption,
                                str(args.network))
        peers = [Lease(x.subnet, x.public_ip, None, backend_data_text(
            encode_backend_data(identity(args.seed, x.public_ip)))) for x in peers]
    backend = UdpBackend(iface_addr=args.underlay, iface_mtu=args.mtu, port=args.port,
                         network=args.network, subnet=args.subnet, tun_name=args.tun,
                         offload=args.offload == "on", encryption=encryption)
    backend.start()
    try:
        backend.set_routes(Routes.build(peers, args.port))
        print("ready", flush=True)
        while not done.is_set():
            if report.wait(0.2):
                report.clear()
                times = os.times()
                print(json.dumps({**backend.counters(), "alive": backend.alive(),
                                  "cpu_seconds": times.user + times.system}), flush=True)
    finally:
        backend.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
