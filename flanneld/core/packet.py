"""IPv4 header logic of the udp backend's datapath: validate, read addresses, decrement TTL,
accept a received packet (all three), build ICMP errors.

This is flannel's `proxy_amd64.c` in Python. The UDP payload is the raw inner IPv4 packet
(no flannel header), so one packet is one TUN read or one datagram, and this module sees
it whole. It is on the per-packet path. It has plain functions over bytes, bytearray or
memoryview, makes no per-packet objects beyond ints, and does no I/O.

Where we differ from flannel's C, and why:
- `check_ipv4` validates what the C trusts (it only checks for >= 20 bytes). A datagram from
  the network is untrusted, and the kernel would drop a bad packet written to the TUN anyway.
- `decrement_ttl` leaves a packet with TTL 0 or 1 untouched and says "drop". The C decrements
  first, so a TTL of 0 wraps to 255 and is forwarded. Its checksum patch, `check +=
  htons(0x100)` with a carry test on byte-swapped values, can leave 0xFFFF (-0) or an
  off-by-one. We use RFC 1624 eqn. 3, whose result equals a full recompute.
- `icmp_error` sends with TTL 64 (the C uses 8). 8 is too low to come back across a long
  host path, and 64 is what Linux uses. It can also build Time Exceeded, which the C leaves
  as a TODO.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

Buffer = bytes | bytearray | memoryview

# Drop reasons returned by `check_ipv4`. They are short enough to serve as metric labels.
DROP_TOO_SHORT = "too_short"            # fewer than 20 bytes
DROP_NOT_IPV4 = "not_ipv4"              # version nibble != 4
DROP_BAD_HEADER_LEN = "bad_header_len"  # IHL < 5, or header longer than the packet
DROP_BAD_TOTAL_LEN = "bad_total_len"    # total length field != bytes received
DROP_BAD_CHECKSUM = "bad_checksum"      # header checksum does not verify
# and by `accept_ipv4`, of a received packet:
DROP_NOT_LOCAL = "not_local"            # destination outside this node's subnet
DROP_TTL_EXCEEDED = "ttl_exceeded"      # TTL 0 or 1: no hop left to forward it

IPPROTO_ICMP = 1
ICMP_DEST_UNREACH = 3
ICMP_TIME_EXCEEDED = 11
CODE_NET_UNREACH = 0       # with ICMP_DEST_UNREACH
CODE_TTL_EXCEEDED = 0      # with ICMP_TIME_EXCEEDED: TTL exceeded in transit
# Error types that must never trigger an ICMP error (RFC 1122 3.2.2): destination
# unreachable, source quench, redirect, time exceeded, parameter problem.
ICMP_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})
ICMP_ERROR_TTL = 64

_MIN_HEADER = 20
_QUOTED_PAYLOAD = 8        # bytes of the offender's payload an ICMP error quotes (RFC 792)
# Bound once and typed: one attribute lookup fewer per packet than a Struct's method.
_unpack_u32: Callable[[Buffer, int], tuple[int]] = struct.Struct("!I").unpack_from
_IP_HEADER = struct.Struct("!BBHHHBBHII")   # 20 bytes, no options


def internet_checksum(data: Buffer) -> int:
    """RFC 1071: the one's complement of the one's complement sum of 16-bit big-endian words.

    An odd length is padded with a zero byte. Because 2**16 is 1 mod 0xFFFF, the sum of the
    words is the whole buffer read as one integer, mod 0xFFFF. Nonzero data sums to
    0xFFFF (-0), not 0. Over data that holds a correct checksum the result is 0.
    """
    n = int.from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    s = n % 0xFFFF
    if s == 0 and n:
        return 0
    return 0xFFFF - s


def ones_sum(data: Buffer) -> int:
    """The one's complement sum of `data`'s 16-bit big-endian words (an odd length padded with
    a zero byte), reduced mod 0xFFFF: 0..0xFFFE, where 0 stands for both zeros (0 and -0).

    Sums add: ones_sum(a + b) == (ones_sum(a) + ones_sum(b)) % 0xFFFF for an even-length
    `a`. Reading the bytes little-endian is the fastest int conversion; a little-endian word
    is the big-endian one byte-swapped, and a swap is a multiplication by 2**8 mod 0xFFFF.
    Odd lengths need no padding that way: the last byte is the low byte of its word.
    """
    x = int.from_bytes(data, "little") % 0xFFFF
    return ((x & 0xFF) << 8) | (x >> 8)


def finish_checksum(total: int) -> int:
    """The checksum field for data (pseudo-header included) whose ones_sum is `total`, with the
    field itself counted as zero: the complement, never 0 (RFC 768: for UDP 0 means "no
    checksum", so 0xFFFF is sent instead, as the kernel does for every protocol)."""
    total %= 0xFFFF
    return 0xFFFF - total if total else 0xFFFF


def check_ipv4(packet: Buffer) -> str | None:
    """None when `packet` is one whole, well-formed IPv4 packet, else a DROP_* reason.

    It never raises on any bytes-like input.
    """
    n = len(packet)
    if n < _MIN_HEADER:
        return DROP_TOO_SHORT
    b0 = packet[0]
    if b0 >> 4 != 4:
        return DROP_NOT_IPV4
    hlen = (b0 & 0x0F) << 2
    if hlen < _MIN_HEADER:
        return DROP_BAD_HEADER_LEN
    if (packet[2] << 8 | packet[3]) != n:
        return DROP_BAD_TOTAL_LEN
    if hlen > n:
        return DROP_BAD_HEADER_LEN
    # The header is nonzero (version 4) and has even length. It verifies iff its words sum
    # to 0xFFFF, that is, iff it is 0 mod 0xFFFF as an integer.
    if int.from_bytes(packet[:hlen], "big") % 0xFFFF:
        return DROP_BAD_CHECKSUM
    return None


def dst_of(packet: Buffer) -> int:
    """Destination address as an int. `packet` has at least 20 bytes."""
    return _unpack_u32(packet, 16)[0]


def src_of(packet: Buffer) -> int:
    """Source address as an int. `packet` has at least 20 bytes."""
    return _unpack_u32(packet, 12)[0]


def decrement_ttl(buf: bytearray | memoryview) -> bool:
    """Decrement the TTL of a valid packet in place and patch its checksum. False (`buf`
    untouched) when the TTL is 0 or 1, so the packet must not be forwarded.

    RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). The TTL is the high byte of the word m, and
    m' = m - 0x0100, so ~m + m' = 0xFEFF whatever the protocol byte.
    """
    ttl = buf[8]
    if ttl <= 1:
        return False
    buf[8] = ttl - 1
    x = ((buf[10] << 8 | buf[11]) ^ 0xFFFF) + 0xFEFF
    x = ((x & 0xFFFF) + (x >> 16)) ^ 0xFFFF
    buf[10] = x >> 8
    buf[11] = x & 0xFF
    return True


def accept_ipv4(packet: bytearray | memoryview, mask: int, net: int) -> str | None:
    """None when a received `packet` may go into the TUN: well-formed (`check_ipv4`), for
    the subnet `net`/`mask` (ints), and with TTL left, which is then decremented in place
    (`decrement_ttl`). Else the DROP_* reason, the packet untouched."""
    reason = check_ipv4(packet)
    if reason is not None:
        return reason
    if _unpack_u32(packet, 16)[0] & mask != net:
        return DROP_NOT_LOCAL
    if not decrement_ttl(packet):
        return DROP_TTL_EXCEEDED
    return None


def _no_error_for_source(addr: int) -> bool:
    """RFC 1122 3.2.2 / RFC 1812 4.3.2.7: the source does not name a single host. That is
    0/8 ("this network", incl. 0.0.0.0), 127/8 loopback, 224/4 multicast, or 240/4 class E
    (incl. 255.255.255.255)."""
    top = addr >> 24
    return top == 0 or top == 127 or top >= 224


def icmp_error(offender: Buffer, type_: int, code: int, src: int) -> bytes | None:
    """An ICMP error about `offender`, from `src` to the offender's source, or None when the
    rules forbid one.

    The packet has a 20-byte IP header (TOS 0, ID 0, no flags, TTL 64, protocol ICMP) and an
    ICMP header (type, code, checksum, 4 zero bytes). It quotes the offender's IP header
    (options included) and the first 8 bytes of its payload, or fewer if the payload is
    shorter. Both checksums are filled in.

    None (RFC 1122 3.2.2, RFC 1812 4.3.2.7) when the offender:
    - fails `check_ipv4`. We never answer garbage.
    - is not the first fragment (its fragment offset is not 0).
    - is an ICMP error (type 3, 4, 5, 11 or 12), or an ICMP packet too short to show its type.
    - has a source that does not name one host. See `_no_error_for_source`.
    - has a multicast or class E/broadcast destination (224/4 and up). A subnet-directed
      broadcast cannot be recognised here, because that needs the netmask.

    Raises ValueError when `type_` is not an ICMP error type or `code` is not a byte.
    """
    if type_ not in ICMP_ERROR_TYPES or not 0 <= code <= 0xFF:
        raise ValueError(f"cannot build ICMP error type {type_} code {code}: not an error")
    if check_ipv4(offender) is not None:
        return None
    if (offender[6] & 0x1F) or offender[7]:
        return None
    off_src = src_of(offender)
    if _no_error_for_source(off_src) or dst_of(offender) >> 28 >= 0xE:
        return None
    hlen = (offender[0] & 0x0F) << 2
    if offender[9] == IPPROTO_ICMP and (len(offender) == hlen
                                        or offender[hlen] in ICMP_ERROR_TYPES):
        return None

    quote = offender[:hlen + _QUOTED_PAYLOAD]
    icmp = bytearray(8 + len(quote))
    icmp[0] = type_
    icmp[1] = code
    icmp[8:] = quote
    icmp[2:4] = internet_checksum(icmp).to_bytes(2, "big")

    header = bytearray(_IP_HEADER.pack(0x45, 0, _MIN_HEADER + len(icmp), 0, 0, ICMP_ERROR_TTL,
                                       IPPROTO_ICMP, 0, src, off_src))
    header[10:12] = internet_checksum(header).to_bytes(2, "big")
    return bytes(header + icmp)
