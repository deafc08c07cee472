"""The other nodes' leases, kept current from etcd listings and watch events.

Like flannel's LeaseWatcher: events for this node's own subnet are dropped; a put of a
known subnet with the same PublicIP and BackendData is a renewal (expiration updated, no
event); a put that changes either emits "added" again, which consumers treat as
replace-by-subnet.
`reset` diffs a full listing (at start and after a compaction) against the known set.
The data plane routes on an immutable snapshot built from the table (`routes.Routes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Literal

from .lease import Lease


@dataclass(frozen=True)
class Event:
    """A routing change: "added" (new subnet or new PublicIP) or "removed" (the lease gone)."""

    kind: Literal["added", "removed"]
    lease: Lease


@dataclass(frozen=True)
class Put:
    """A watch PUT of a lease key (create or renew)."""

    lease: Lease


@dataclass(frozen=True)
class Delete:
    """A watch DELETE of a lease key (explicit delete or etcd lease expiry)."""

    subnet: IPv4Network


@dataclass(frozen=True)
class WatchBatch:
    """One watch response: its lease changes in order (unparsable keys skipped, logged)."""

    changes: tuple[Put | Delete, ...]
    revision: int  # header revision of the response


@dataclass(frozen=True)
class WatchBroken:
    """The watch ended; the caller lists again and watches from the new revision + 1."""

    compacted: bool  # True: the start revision was compacted away
    reason: str


Sink = Callable[[WatchBatch | WatchBroken], None]


class LeaseTable:
    """Other nodes' leases by subnet (never this node's own), in insertion order."""

    def __init__(self, own: IPv4Network | None) -> None:
        self.own = own
        self._leases: dict[IPv4Network, Lease] = {}

    def __len__(self) -> int:
        return len(self._leases)

    def __iter__(self) -> Iterator[Lease]:
        return iter(list(self._leases.values()))

    def get(self, subnet: IPv4Network) -> Lease | None:
        return self._leases.get(subnet)

    def _drop(self, subnet: IPv4Network) -> Lease | None:
        return self._leases.pop(subnet, None)

    def _put(self, lease: Lease) -> Event | None:
        old = self._leases.get(lease.subnet)
        self._leases[lease.subnet] = lease
        if (old is not None and old.public_ip == lease.public_ip
                and old.backend_data == lease.backend_data):
            return None  # a renewal: new expiration, no routing change
        return Event("added", lease)

    def apply(self, events: Iterable[Put | Delete]) -> list[Event]:
        """Fold watch events in; return the routing changes they make, in order."""
        out: list[Event] = []
        for ev in events:
            if isinstance(ev, Put):
                if ev.lease.subnet != self.own and (change := self._put(ev.lease)):
                    out.append(change)
            elif ev.subnet != self.own and (old := self._drop(ev.subnet)) is not None:
                out.append(Event("removed", old))
        return out

    def reset(self, snapshot: Iterable[Lease]) -> list[Event]:
        """Replace the known set by a full listing; return removals, then additions."""
        fresh: dict[IPv4Network, Lease] = {}
        for lease in snapshot:
            if lease.subnet != self.own:
                fresh[lease.subnet] = lease  # a repeated subnet: the last one wins
        out = [Event("removed", old) for subnet in list(self._leases)
               if subnet not in fresh and (old := self._drop(subnet)) is not None]
        for lease in fresh.values():
            if change := self._put(lease):
                out.append(change)
        return out
