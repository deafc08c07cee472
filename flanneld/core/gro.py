"""Coalescing of received TCP segments into one super-packet per TUN write: Linux GRO's rules
(`tcp_gro_receive`, `inet_gro_receive`), in Python.

Input: the packets of one receive batch, in arrival order, each already checked (whole,
well-formed IPv4 for this node, TTL decremented). Output: the writes for an offloading
TUN, each a list of buffers whose first is a virtio-net header. A run of consecutive
packets becomes one write when, as in Linux GRO:

- each is TCP/IPv4 with a 20-byte IP header (no options), not a fragment, with payload;
- all agree on every header byte but the IP total length, ID and checksum, the TCP
  sequence number, PSH and checksum: so the same addresses and ports, TOS, TTL, DF, ACK
  number, window, urgent pointer, data offset, flags and TCP options (timestamps
  included);
- the flags are ACK, or ACK+PSH on the last packet of the run (PSH ends a run; SYN, FIN,
  RST, URG, ECE and CWR are never coalesced);
- the sequence numbers are contiguous; every packet but the last carries exactly the
  first one's payload size (the segment size), the last at most that; the run fits in
  64 KiB;
- without DF the IP IDs count up by one;
Each coalesced segment's TCP checksum is verified (Linux GRO checks it too, against the
complete checksum that it derives from the outer UDP one): the coalesced packet gets a
partial checksum that the kernel completes without looking back, so a segment that went
bad before it was sent, or was forged with a bad checksum, would otherwise reach the pod
as good data. A segment that fails ends the run and is written on its own, for the
kernel to drop and count (Tcp InCsumErrors). Packets that are not coalesced are not
checked here: the kernel checks them as it would on a plain TUN.

The coalesced packet carries the first packet's headers with the total length, IP checksum
and PSH of the run, a TCP checksum field holding the pseudo-header sum, and a virtio-net
header GSO_TCPV4 with the segment size and NEEDS_CSUM. Every other packet is written as
it came with a plain virtio-net header.

`trusted` packets (opened from an encrypted peer: the AEAD tag authenticated every byte
as its node sent it) skip the checksum verification, and may carry a partial TCP checksum
(`gso.partial_tcp4`, as that peer sends them): one that is not coalesced is written with
NEEDS_CSUM for the kernel to complete. Pure: no I/O.
"""

from __future__ import annotations

import struct

from . import vnet
from .gso import tcp4_partial_at
from .packet import finish_checksum, ones_sum

IPPROTO_TCP = 6
TCP_ACK, TCP_PSH = 0x10, 0x08
MAX_PACKET = 65535
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


def _key_mask(hl: int) -> int:
    """Of a `hl`-byte IPv4 (20 bytes) + TCP header read as a big-endian int: 1 bits over every
    byte that must be equal for two segments to coalesce."""
    mask = bytearray(b"\xff" * hl)
    for start, end in ((2, 6), (10, 12), (24, 28), (36, 38)):   # length, ID, sums, seq
        mask[start:end] = bytes(end - start)
    mask[33] = 0xFF & ~TCP_PSH
    return int.from_bytes(mask, "big")


_MASKS = {20 + thl: _key_mask(20 + thl) for thl in range(20, 61, 4)}


def _tcp_ok(packet: memoryview, addrs: int) -> bool:
    """The TCP checksum of `packet` (a 20-byte IP header, then TCP) verifies; `addrs` is the
    ones_sum of its source and destination addresses."""
    return (ones_sum(packet[20:]) + addrs + IPPROTO_TCP + len(packet) - 20) % 0xFFFF == 0


def may_extend(packet: memoryview) -> bool:
    """A run could go on after `packet`: TCP/IPv4 without IP options, not a fragment, with
    payload and no flag but ACK. After any other packet the shell may write what it has."""
    n = len(packet)
    return (n > 40 and packet[0] == 0x45 and packet[9] == IPPROTO_TCP
            and not (packet[6] & 0x3F or packet[7]) and packet[33] == TCP_ACK
            and packet[32] >= 0x50 and n > 20 + ((packet[32] >> 4) << 2))


def _single(packet: memoryview) -> list[memoryview | bytes]:
    """The write of one trusted packet not coalesced: NEEDS_CSUM if its TCP checksum is
    partial (or verifies as if it were), else as it came."""
    ihl = tcp4_partial_at(packet)
    return [vnet.needs_csum(ihl) if ihl else vnet.PLAIN, packet]


def coalesce(packets: list[memoryview],
             trusted: bool = False) -> tuple[list[list[memoryview | bytes]], int]:
    """(writes, merged): the TUN writes for `packets` (each a list of buffers starting with a
    virtio-net header), and how many packets went into coalesced writes. `trusted`: see the
    module docstring."""
    writes: list[list[memoryview | bytes]] = []
    append = writes.append
    plain = vnet.PLAIN
    masks = _MASKS
    from_bytes = int.from_bytes
    u16, u32 = _U16.unpack_from, _U32.unpack_from
    merged = 0
    count = len(packets)
    i = 0
    while i < count:
        p = packets[i]
        i += 1
        if i == count or not may_extend(p):
            append(_single(p) if trusted else [plain, p])
            continue
        n = len(p)
        hl = 20 + ((p[32] >> 4) << 2)
        mask = masks[hl]
        mss = n - hl
        key = from_bytes(p[:hl], "big") & mask
        df = p[6] & 0x40
        addrs = ones_sum(p[12:20])
        run = [p]
        total = n
        nxt = (u32(p, 24)[0] + mss) & 0xFFFFFFFF
        ident = u16(p, 4)[0]
        checked = False                 # p's checksum, once a second packet would join it
        # _tcp_ok inlined for the joiners: ones_sum(x) is (x read little-endian) * 2**8
        pseudo_less_length = addrs + IPPROTO_TCP - 20
        while i < count:
            q = packets[i]
            qn = len(q)
            size = qn - hl
            if (size <= 0 or size > mss or total + size > MAX_PACKET
                    or u32(q, 24)[0] != nxt or from_bytes(q[:hl], "big") & mask != key):
                break
            ident = (ident + 1) & 0xFFFF
            if not df and u16(q, 4)[0] != ident:
                break
            if not trusted and (not (checked or _tcp_ok(p, addrs)) or (
                    (from_bytes(q[20:], "little") % 0xFFFF << 8) + pseudo_less_length + qn
            ) % 0xFFFF):
                break
            checked = True
            run.append(q)
            total += size
            nxt = (nxt + size) & 0xFFFFFFFF
            i += 1
            if size < mss or q[33] & TCP_PSH:
                break
        if len(run) == 1:
            append(_single(p) if trusted else [plain, p])
            continue
        merged += len(run)
        header = bytearray(p[:hl])
        header[2:4] = total.to_bytes(2, "big")
        header[10] = header[11] = 0
        ip_sum = finish_checksum(ones_sum(header[:20]))
        header[10:12] = ip_sum.to_bytes(2, "big")
        header[33] = run[-1][33]
        pseudo = (addrs + IPPROTO_TCP + total - 20) % 0xFFFF
        header[36:38] = pseudo.to_bytes(2, "big")
        write: list[memoryview | bytes] = [vnet.tcp4_gso(hl, mss), bytes(header)]
        write.extend(q[hl:] for q in run)
        append(write)
    return writes, merged
