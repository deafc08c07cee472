"""A plain rtnetlink socket: one request at a time, its answer read whole.

The messages are `core.rtnl`'s. A socket stays in the network namespace it was made in,
so one made inside a pod's namespace (`netns.inside`) talks to that namespace.
"""

from __future__ import annotations

import _socket  # not `socket`: its enums cost a cold call about 2 ms to build
import errno
import os

from ..core import rtnl

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10        # acknowledgements without a copy of the request
BUFFER = 1 << 16           # a dump's datagrams are at most 32 KiB


class NetlinkError(OSError):
    """The kernel refused a request: `errno` says why."""


class Netlink:
    def __init__(self) -> None:
        self.sock = _socket.socket(_socket.AF_NETLINK,
                                   _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        try:
            self.sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        except OSError:
            pass
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def request(self, kind: int, body: bytes, flags: int = 0) -> list[bytes]:
        """Send one request (acknowledged, or a dump with `rtnl.F_DUMP`) and return the
        bodies of its answers; NetlinkError when the kernel refuses it."""
        self.seq += 1
        seq = self.seq
        self.sock.send(rtnl.message(kind, rtnl.F_REQUEST | rtnl.F_ACK | flags, seq, body))
        out: list[bytes] = []
        while True:
            data = self.sock.recv(BUFFER)
            for reply in rtnl.replies(data):
                if reply.seq != seq:
                    continue        # an answer to an earlier request that gave up
                if reply.kind == rtnl.NLMSG_ERROR:
                    code = rtnl.error_code(reply.body)
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    return out
                if reply.kind == rtnl.NLMSG_DONE:
                    return out
                out.append(reply.body)     # a get's answer is followed by its ack


def is_gone(e: NetlinkError) -> bool:
    """Whether the error says the object is not there."""
    return e.errno in (errno.ENODEV, errno.ENOENT, errno.ESRCH)
