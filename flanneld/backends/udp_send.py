"""The udp backend's sends of packet trains: many datagrams of one size to one peer.

A train is a list of buffers, `per` of them for each packet (a segment's header and a
view of its payload, or a whole packet), every packet `size` bytes but the last. With
UDP GSO it leaves in as few `sendmsg` as the kernel's limits allow (UDP_MAX_SEGMENTS
segments and 64 KiB a send); the kernel cuts each into the same datagrams. A route that
refuses a GSO send (EIO from a route through IPsec, or on kernels before 6.11 a device
without checksum offload; EINVAL and the like from a kernel that lacks UDP_SEGMENT) gets
that peer's packets one `sendmsg` each from then on; this is counted and logged once
per peer. Part of the hot path: it moves whole trains, counts per train.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Sequence
from typing import Protocol

from ..core.packet import Buffer
from ..io import udp_offload

log = logging.getLogger("flanneld.backends.udp")

Sockaddr = tuple[str, int]
DROP_SEND_ERROR = "send_error"        # sendmsg failed (e.g. the underlay is down)
_DROP_SEND = f"drop_{DROP_SEND_ERROR}"
# errnos of a GSO send that the route cannot take: the packets go again one by one
GSO_REFUSED = frozenset({errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP})


class Sendmsg(Protocol):
    """What the sender needs of a socket (`socket.socket` has it)."""

    def sendmsg(self, buffers: Sequence[Buffer], ancdata: Sequence[tuple[int, int, bytes]] = ...,
                flags: int = ...,
                address: Sockaddr = ..., /) -> int: ...


class TrainSender:
    """Sends trains on `sock`, with GSO if `gso`; counts into `counts` (the backend's
    counters: tx_packets, tx_bytes, tx_gso_sends, tx_gso_fallbacks, drop_send_error)."""

    def __init__(self, sock: Sendmsg, counts: dict[str, int], gso: bool) -> None:
        self.sock, self.counts, self.gso = sock, counts, gso
        self.refused: set[Sockaddr] = set()      # peers whose route refused a GSO send

    def send(self, parts: Sequence[Buffer], per: int, size: int, length: int,
             hop: Sockaddr) -> None:
        """Send the packets in `parts` (`per` buffers each, all `size` bytes but the last,
        `length` bytes in all) to `hop`."""
        c, sock = self.counts, self.sock
        count = len(parts) // per
        if count > 1 and self.gso and hop not in self.refused:
            step = min(udp_offload.MAX_SEGMENTS, udp_offload.MAX_GSO_BYTES // size) * per
            at = 0
            try:
                for at in range(0, len(parts), step):
                    sock.sendmsg(parts[at:at + step], udp_offload.segment_cmsg(size), 0, hop)
                    c["tx_gso_sends"] += 1
            except OSError as e:
                sent = at // per
                if sent or e.errno not in GSO_REFUSED:
                    c[_DROP_SEND] += count - sent
                    c["tx_packets"] += sent
                    c["tx_bytes"] += sent * size
                    return
                self.refused.add(hop)
                c["tx_gso_fallbacks"] += 1
                log.warning("UDP GSO to %s:%d refused (%s); sending without it", hop[0],
                            hop[1], e.strerror)
            else:
                c["tx_packets"] += count
                c["tx_bytes"] += length
                return
        for at in range(0, len(parts), per):
            packet = parts[at:at + per]
            try:
                sock.sendmsg(packet, (), 0, hop)
            except OSError:
                c[_DROP_SEND] += 1
                continue
            c["tx_packets"] += 1
            c["tx_bytes"] += sum(len(b) for b in packet)
