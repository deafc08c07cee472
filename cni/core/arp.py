"""The gratuitous ARP a new pod interface sends (an RFC 5227 announcement), so that the
node and the other pods holding a recycled IP's old MAC learn the new one at once."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

BROADCAST = b"\xff" * 6
ETH_P_ARP = 0x0806
ARP_REQUEST = 1
_HEADER = struct.Struct("!6s6sHHHBBH6s4s6s4s")


def mac_bytes(mac: str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", ""))
    if len(raw) != 6:
        raise ValueError(f"{mac!r} is not a 6-byte MAC")
    return raw


def announcement(mac: str, ip: IPv4Address) -> bytes:
    """The Ethernet frame: an ARP request from `mac` for `ip` itself (sender and target IP
    both `ip`, target MAC zero), to the broadcast address. A receiver that has a neighbour
    entry for `ip` takes the new MAC; one that has none makes none (arp_accept=0)."""
    src = mac_bytes(mac)
    return _HEADER.pack(BROADCAST, src, ETH_P_ARP, 1, 0x0800, 6, 4, ARP_REQUEST,
                        src, ip.packed, b"\0" * 6, ip.packed)
