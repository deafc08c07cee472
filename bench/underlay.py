"""What a tunnel makes of a pod's packet on the underlay: the IPv4 packets a node sends
on a device while something runs, seen by an AF_PACKET socket in the node's namespace.

bench.throughput uses it to check a tunnel's MTU: a pod packet of the pod MTU must leave
as one datagram that fits the underlay MTU, never as fragments.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

from lab.netns import NETNS_DIR, inside

ETH_P_ALL = 0x0003        # only a socket for every protocol sees what the node sends
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
IPPROTO_UDP = 17


@dataclass(frozen=True)
class Sent:
    """One IPv4 packet a node sent."""
    length: int                  # IPv4 total length: the datagram's size on the wire
    src: IPv4Address
    dst: IPv4Address
    proto: int
    fragment: bool               # more fragments follow, or this is not the first
    dport: int | None            # UDP destination port (unfragmented or first fragment)


def parse(packet: bytes) -> Sent | None:
    """The IPv4 header fields of `packet`, None if it is not one."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    length, frag = struct.unpack_from("!H2xH", packet, 2)
    offset, more = frag & 0x1FFF, bool(frag & 0x2000)
    dport = None
    if packet[9] == IPPROTO_UDP and offset == 0 and len(packet) >= ihl + 4:
        dport = struct.unpack_from("!H", packet, ihl + 2)[0]
    return Sent(length, IPv4Address(packet[12:16]), IPv4Address(packet[16:20]), packet[9],
                more or offset != 0, dport)


def sent_during(netns: str, dev: str, action: Callable[[], None],
                settle: float = 0.3) -> list[Sent]:
    """The IPv4 packets that `dev` in `netns` sent while `action` ran (and `settle`
    seconds after)."""
    with inside(f"{NETNS_DIR}/{netns}"):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    with sock:
        sock.bind((dev, ETH_P_ALL))
        action()
        out = []
        deadline = time.monotonic() + settle
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, addr = sock.recvfrom(65536)
            except TimeoutError:
                break
            if (addr[1], addr[2]) == (ETH_P_IP, PACKET_OUTGOING) and (
                    sent := parse(data)) is not None:
                out.append(sent)
    return out
