"""The virtio-net header that a TUN device opened with IFF_VNET_HDR puts before each packet.

`struct virtio_net_hdr` (linux/virtio_net.h), 10 bytes, in the host's byte order on a
little-endian host (the TUN's default; we never set TUNSETVNETBE):

    u8 flags, u8 gso_type, u16 hdr_len, u16 gso_size, u16 csum_start, u16 csum_offset

On a read, `gso_type` TCPV4 means the packet is a TCP "super-packet" of up to 64 KiB that
must leave as segments of `gso_size` payload bytes; flag NEEDS_CSUM means the checksum at
`csum_start + csum_offset` holds only the pseudo-header sum and the sum over the bytes from
`csum_start` on must still be added. On a write, the same fields ask the kernel to do that
work (GSO_NONE with no flags: an ordinary packet whose checksums the kernel verifies).
Pure: no I/O.
"""

from __future__ import annotations

import struct

SIZE = 10
F_NEEDS_CSUM = 1          # VIRTIO_NET_HDR_F_NEEDS_CSUM
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP_L4 = 5            # UDP GSO
GSO_ECN = 0x80            # with TCPV4/6: the flow uses ECN (CWR on the first segment only)

TCP_CSUM_OFFSET = 16      # the checksum's offset in a TCP header

_HDR = struct.Struct("<BBHHHH")
PLAIN = bytes(SIZE)       # GSO_NONE, no flags: the kernel checks the packet as it would any


# (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset) of the header at a buffer's start
unpack_from = _HDR.unpack_from


def tcp4_gso(hdr_len: int, gso_size: int, ip_hlen: int = 20) -> bytes:
    """The header of a coalesced TCP/IPv4 packet written to the TUN: segments of `gso_size`
    payload bytes after `hdr_len` bytes of headers, TCP checksum to be completed."""
    return _HDR.pack(F_NEEDS_CSUM, GSO_TCPV4, hdr_len, gso_size, ip_hlen, TCP_CSUM_OFFSET)


def needs_csum(csum_start: int, csum_offset: int = TCP_CSUM_OFFSET) -> bytes:
    """The header of a packet written to the TUN whose checksum at `csum_start +
    csum_offset` holds the pseudo-header sum, for the kernel to complete (or, delivering
    it locally, to take as good): NEEDS_CSUM, no GSO."""
    return _HDR.pack(F_NEEDS_CSUM, GSO_NONE, csum_start + csum_offset + 2, 0, csum_start,
                     csum_offset)
