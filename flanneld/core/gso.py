"""Segmentation of the TCP super-packets that an offloading TUN hands over, and completion of
partial checksums: the kernel's `tcp_gso_segment` and `skb_checksum_help`, in Python.

A super-packet is one IPv4 + TCP header followed by up to 64 KiB of payload that must
leave as segments of `mss` payload bytes (the virtio-net header's gso_size). Each segment
becomes a complete wire packet, as the kernel would have put on a plain TUN: the headers
replicated, then per segment the IP total length, the IP ID (incremented per segment),
the IP header checksum, the TCP sequence number, the flags (FIN and PSH only on the last
segment, CWR only on the first) and a full TCP checksum. A flannel node writes these
datagrams unchanged into its plain TUN, so each must be valid on its own.

The result is a list of buffers for one `sendmsg` (the header of each segment, then a
view of its payload in the caller's buffer), so no payload byte is copied in Python. The
checksum arithmetic is done on the sums of the parts (`packet.ones_sum` adds), so each
payload byte is read once. Pure: no I/O.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable

from .packet import Buffer, finish_checksum, ones_sum

IPPROTO_TCP = 6
TCP_FIN, TCP_PSH, TCP_CWR = 0x01, 0x08, 0x80

_IP = struct.Struct("!BBHHHBBHII")          # 20 bytes, the fixed IPv4 header
_TCP = struct.Struct("!HHIIBBHHH")           # 20 bytes, the fixed TCP header


class SegmentError(ValueError):
    """The super-packet cannot be segmented (it is not TCP/IPv4 or its lengths disagree)."""


def tcp_header_length(packet: Buffer, ihl: int) -> int:
    """The TCP header length of `packet` (IPv4 header of `ihl` bytes), 0 if not readable."""
    if len(packet) < ihl + 20:
        return 0
    return (packet[ihl + 12] >> 4) << 2


def segment_tcp4(packet: memoryview, mss: int,
                 partial: bool = False) -> tuple[list[Buffer], int]:
    """(parts, size): the wire packets of super-packet `packet`, as header/payload buffers in
    order, and the size of every segment but the last (which may be shorter), for UDP GSO.

    `packet` is an IPv4 TCP packet whose IP total length may be 0 or stale (the kernel
    sets it for a super-packet, but its length is what was read) and whose TCP checksum
    field holds anything; `mss` is the payload per segment. With `partial` each segment's
    TCP checksum field gets only its pseudo-header sum (`partial_tcp4`), not the full
    checksum: for a receiver that completes it or hands it on as partial. Raises
    SegmentError.
    """
    n = len(packet)
    if n < 40 or packet[0] >> 4 != 4 or packet[9] != IPPROTO_TCP:
        raise SegmentError("not a TCP/IPv4 packet")
    ihl = (packet[0] & 0x0F) << 2
    thl = tcp_header_length(packet, ihl)
    hl = ihl + thl
    if ihl < 20 or thl < 20 or hl > n:
        raise SegmentError(f"bad header lengths (IP {ihl}, TCP {thl}, packet {n})")
    if mss <= 0:
        raise SegmentError(f"bad segment size {mss}")
    (vihl, tos, _, ident, frag, ttl, proto, _, src, dst) = _IP.unpack_from(packet, 0)
    (sport, dport, seq, ack, off, flags, win, _, urg) = _TCP.unpack_from(packet, ihl)
    ip_opts = bytes(packet[20:ihl])
    tcp_opts = bytes(packet[ihl + 20:hl])
    pack = _headers(ihl, thl)
    # Sums of everything that is the same in every segment: IP header words but length,
    # ID and checksum; TCP words but sequence number, flags byte and checksum, plus the
    # pseudo-header's addresses and protocol; then the lengths of a full segment.
    addrs = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
    ip_fixed = ((vihl << 8 | tos) + frag + (ttl << 8 | proto) + addrs + ones_sum(ip_opts)
                + hl + mss)
    tcp_fixed = (addrs + IPPROTO_TCP + sport + dport + (ack >> 16) + (ack & 0xFFFF)
                 + (off << 8) + win + urg + ones_sum(tcp_opts) + thl + mss)
    pseudo = addrs + IPPROTO_TCP + thl + mss   # a full segment's pseudo-header sum
    count = max(1, -(-(n - hl) // mss))
    last = count - 1
    first_flags = flags & ~(TCP_FIN | TCP_PSH)
    rest_flags = first_flags & ~TCP_CWR
    total = hl + mss
    parts: list[Buffer] = [b""] * (2 * count)
    from_bytes = int.from_bytes
    for i in range(count):
        start = hl + i * mss
        f = rest_flags if i else first_flags
        if i == last:               # the rest of the payload, and the flags the packet had
            short = total - (n - start + hl)
            total -= short
            ip_fixed -= short
            tcp_fixed -= short
            pseudo -= short
            f = flags & ~TCP_CWR if i else flags
        payload = packet[start:start + mss]
        ipid = (ident + i) & 0xFFFF
        x = (ip_fixed + ipid) % 0xFFFF
        s = (seq + i * mss) & 0xFFFFFFFF
        if partial:
            csum = pseudo % 0xFFFF
        else:
            # The payload's sum read little-endian, times 2**8: its big-endian sum
            # (packet.ones_sum)
            y = (tcp_fixed + (s >> 16) + (s & 0xFFFF) + f
                 + (from_bytes(payload, "little") % 0xFFFF << 8)) % 0xFFFF
            csum = 0xFFFF - y if y else 0xFFFF
        parts[2 * i] = pack(vihl, tos, total, ipid, frag, ttl, proto, 0xFFFF - x if x else 0xFFFF,
                            src, dst, ip_opts, sport, dport, s, ack, off, f, win, csum, urg,
                            tcp_opts)
        parts[2 * i + 1] = payload
    return parts, hl + mss


@functools.lru_cache(maxsize=64)
def _headers(ihl: int, thl: int) -> Callable[..., bytes]:
    """The packer of one segment's IPv4 + TCP header with options of these lengths."""
    return struct.Struct(f"!BBHHHBBHII{ihl - 20}sHHIIBBHHH{thl - 20}s").pack


def complete_checksum(packet: bytearray | memoryview, csum_start: int, csum_offset: int) -> bool:
    """Finish a partial checksum in place: the field at `csum_start + csum_offset` holds the
    pseudo-header sum; add the sum over the bytes from `csum_start` on. False (nothing
    changed) when the field lies outside the packet."""
    at = csum_start + csum_offset
    if csum_start < 20 or at + 2 > len(packet):
        return False
    csum = finish_checksum(ones_sum(packet[csum_start:]))    # the field counts as its sum
    packet[at] = csum >> 8
    packet[at + 1] = csum & 0xFF
    return True


def _tcp4_pseudo(packet: Buffer) -> tuple[int, int] | None:
    """(offset of the TCP checksum field, pseudo-header sum mod 0xFFFF) of a TCP/IPv4
    packet that is not a fragment and holds its whole fixed TCP header; None otherwise."""
    n = len(packet)
    if n < 40 or packet[0] >> 4 != 4 or packet[9] != IPPROTO_TCP or (packet[6] & 0x3F
                                                                      or packet[7]):
        return None
    ihl = (packet[0] & 0x0F) << 2
    if ihl < 20 or ihl + 20 > n:
        return None
    addrs = int.from_bytes(packet[12:20], "big") % 0xFFFF
    return ihl + 16, (addrs + IPPROTO_TCP + n - ihl) % 0xFFFF


def partial_tcp4(packet: bytearray | memoryview) -> bool:
    """Put a TCP/IPv4 packet's checksum in partial form in place: the field holds the
    pseudo-header sum (as Linux's CHECKSUM_PARTIAL and a virtio-net NEEDS_CSUM packet have
    it), whatever it held. False (nothing changed) for anything else: not TCP/IPv4, a
    fragment, or too short to hold a TCP header."""
    found = _tcp4_pseudo(packet)
    if found is None:
        return False
    at, pseudo = found
    packet[at] = pseudo >> 8
    packet[at + 1] = pseudo & 0xFF
    return True


def tcp4_partial_at(packet: Buffer) -> int:
    """The IPv4 header length of a TCP/IPv4 packet (no fragment) whose checksum field holds
    exactly its pseudo-header sum (mod 0xFFFF), else 0.

    Completing such a packet's checksum is right even when the field held a full checksum
    that happens to equal that sum: a field that verifies the packet is the one completion
    computes. So a receiver may treat every packet this finds as partial."""
    found = _tcp4_pseudo(packet)
    if found is None:
        return 0
    at, pseudo = found
    if ((packet[at] << 8 | packet[at + 1]) - pseudo) % 0xFFFF:
        return 0
    return at - 16
