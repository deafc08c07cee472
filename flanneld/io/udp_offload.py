"""UDP segmentation and receive offload on the udp backend's socket (Linux 4.18 / 5.0 on).

- UDP GSO (`UDP_SEGMENT`): one `sendmsg` of many same-size datagrams (a shorter last one) to
  one address; the segment size rides in a control message. The kernel splits the buffer
  into datagrams after routing, once, instead of once per `sendto`.
- UDP GRO (`UDP_GRO`): a receive may return several datagrams of one sender back to back,
  all of the size given in a control message but the last. The kernel only merges
  datagrams that arrived as one GSO send or that the device aggregated.

Both are probed on the socket at start; `gro_size` reads the control message.
"""

from __future__ import annotations

import socket
import struct

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
MAX_SEGMENTS = 64            # UDP_MAX_SEGMENTS on older kernels (newer allow 128)
MAX_GSO_BYTES = 65507        # a GSO send is one UDP "datagram" of at most this payload
ANCILLARY = socket.CMSG_SPACE(4)

_SIZE = struct.Struct("=H")  # UDP_SEGMENT's value: a u16 in host order
_INT = struct.Struct("=i")   # UDP_GRO's control message: an int in host order


def gso_supported(sock: socket.socket) -> bool:
    """The kernel knows UDP_SEGMENT (setting the socket's default segment size to 0, which
    means "no segmentation unless a send asks for it", changes nothing)."""
    try:
        sock.setsockopt(SOL_UDP, UDP_SEGMENT, 0)
    except OSError:
        return False
    return True


def enable_gro(sock: socket.socket) -> bool:
    """Turn UDP_GRO on for `sock`; False when the kernel refuses."""
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        return False
    return True


def segment_cmsg(size: int) -> list[tuple[int, int, bytes]]:
    """The control message of a GSO send of datagrams of `size` bytes."""
    return [(SOL_UDP, UDP_SEGMENT, _SIZE.pack(size))]


def gro_size(ancillary: list[tuple[int, int, bytes]], received: int) -> int:
    """The size of the datagrams in a receive of `received` bytes: the UDP_GRO control
    message's, or the whole receive (one datagram) without one."""
    for level, kind, data in ancillary:
        if level == SOL_UDP and kind == UDP_GRO and len(data) >= _INT.size:
            size: int = _INT.unpack_from(data)[0]
            if size > 0:
                return size
    return received
