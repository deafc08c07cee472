"""The data plane's route snapshot: which peer's UDP address an overlay destination goes to.

flannel's C proxy keeps a list of (network, mask, next hop) and scans it linearly with
move-to-front. Here a snapshot is built once per lease change and never mutated, so the
data-plane threads can read it without a lock while the daemon swaps in a new one.
`lookup` masks the destination once per distinct prefix length (normally one: all subnets
of a network share SubnetLen), longest first, and looks the result up in a dict.

The next hop is the peer's PublicIP with *this* node's port, as in flannel: all nodes of a
network must use the same Port.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from .lease import Lease

Sockaddr = tuple[str, int]


class Routes:
    """An immutable map from overlay destinations to peers' (public IP, port) sockaddrs.

    Build it with `Routes.build`; `Routes.EMPTY` routes nothing. `peers` holds the public
    IPs (strings, as `recvfrom` reports them) of every peer, for the receive-side check;
    `backend_data` what each peer's lease advertises (None: nothing), by the same IPs.
    """

    __slots__ = ("_order", "peers", "_size", "backend_data")

    EMPTY: ClassVar[Routes]

    def __init__(self, order: tuple[tuple[int, dict[int, Sockaddr]], ...],
                 peers: frozenset[str], size: int,
                 backend_data: dict[str, str | None] | None = None) -> None:
        self._order = order      # (mask, {network address as int: sockaddr}), longest first
        self.peers = peers
        self._size = size
        self.backend_data = backend_data or {}

    @classmethod
    def build(cls, leases: Iterable[Lease], port: int) -> Routes:
        """A snapshot routing each lease's subnet to (its public IP, `port`).

        A subnet given twice keeps the last lease, as a listing would. Raises ValueError for a
        port outside 1..65535."""
        if not 0 < port < 65536:
            raise ValueError(f"cannot build routes for UDP port {port}: not in 1..65535")
        by_len: dict[int, dict[int, Sockaddr]] = {}
        hops: dict[str, Sockaddr] = {}   # one tuple per peer, shared by its subnets
        data: dict[str, str | None] = {}
        for lease in leases:
            ip = str(lease.public_ip)
            hop = hops.setdefault(ip, (ip, port))
            data[ip] = lease.backend_data
            by_len.setdefault(lease.subnet.prefixlen, {})[int(lease.subnet.network_address)] = hop
        order = tuple(((0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF, table)
                      for length, table in sorted(by_len.items(), reverse=True))
        # A peer whose every subnet was shadowed by a later lease is not a peer.
        peers = frozenset(hop[0] for _, table in order for hop in table.values())
        return cls(order, peers, sum(len(table) for _, table in order),
                   {ip: data[ip] for ip in peers})

    def lookup(self, dst: int) -> Sockaddr | None:
        """The sockaddr of the peer whose subnet holds `dst` (an IPv4 address as an int);
        the longest prefix wins. None when no peer's subnet holds it."""
        for mask, table in self._order:
            hop = table.get(dst & mask)
            if hop is not None:
                return hop
        return None

    def __len__(self) -> int:
        """The number of subnets routed."""
        return self._size

    def __repr__(self) -> str:
        return f"<Routes: {self._size} subnets, {len(self.peers)} peers>"


Routes.EMPTY = Routes((), frozenset(), 0)
