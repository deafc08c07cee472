"""A registry in memory, held to the same contract as `io.etcd.EtcdRegistry` by the same
tests (tests/integration/test_registry_contract.py): what unit tests and the lab drive the
daemon's lease logic with, as host-local ships an in-memory store beside its disk one.

Like etcd: every write gets the next revision; a listing reports the current one; a watch
replays what happened from its start revision, then hears each change as it is made (on
the writer's thread); a start revision at or below `compact()`'s is refused with one
WatchBroken; a lease with a TTL vanishes, with a delete event, once the clock passes its
expiry (looked at on every call).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

from ..core.errors import LeaseConflict
from ..core.lease import Lease, decode_lease, encode_attrs, subnet_key
from ..core.lease_watch import Delete, Put, Sink, WatchBatch, WatchBroken
from ..core.registry import Registry


class MemoryRegistry:
    """The network config and the leases by subnet; safe to use from several threads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.config: str | None = None
        self.leases: dict[IPv4Network, Lease] = {}
        self.revision = 1
        self._history: list[tuple[int, Put | Delete]] = []
        self._compacted = 0
        self._sinks: dict[int, Sink] = {}
        self._next_watch = 0
        self._lock = threading.RLock()

    # -- the config

    def get_network_config(self) -> str | None:
        return self.config

    def create_network_config(self, text: str) -> tuple[bool, str]:
        with self._lock:
            if self.config is not None:
                return False, self.config
            self.config = text
            self.revision += 1
            return True, text

    # -- the leases

    def list_leases(self) -> tuple[list[Lease], int]:
        with self._lock:
            self._expire()
            ordered = sorted(self.leases.values(), key=lambda x: subnet_key(x.subnet))
            return ordered, self.revision

    def create_lease(self, subnet: IPv4Network, public_ip: IPv4Address,
                     ttl: int | None, backend_data: str | None = None) -> Lease:
        with self._lock:
            self._expire()
            if subnet in self.leases:
                raise LeaseConflict(f"cannot create the lease {subnet}: the key exists "
                                    f"already (another node leased {subnet} first)")
            return self._put(subnet, public_ip, ttl, backend_data)

    def renew_lease(self, subnet: IPv4Network, public_ip: IPv4Address,
                    ttl: int | None, backend_data: str | None = None) -> Lease:
        with self._lock:
            self._expire()
            return self._put(subnet, public_ip, ttl, backend_data)

    def delete_lease(self, subnet: IPv4Network) -> None:
        with self._lock:
            self._expire()
            if subnet in self.leases:
                self._delete(subnet)

    def watch_leases(self, start_revision: int, sink: Sink) -> Callable[[], None]:
        with self._lock:
            self._expire()
            if start_revision <= self._compacted:
                sink(WatchBroken(True, f"cannot watch the leases from revision "
                                       f"{start_revision}: compacted up to revision "
                                       f"{self._compacted}"))
                return lambda: None
            for revision, change in self._history:
                if revision >= start_revision:
                    sink(WatchBatch((change,), revision))
            number = self._next_watch
            self._next_watch += 1
            self._sinks[number] = sink

        def cancel() -> None:
            with self._lock:
                self._sinks.pop(number, None)
        return cancel

    # -- what etcd does by itself

    def compact(self) -> int:
        """Forget the history up to the current revision, as `etcdctl compact` does."""
        with self._lock:
            self._compacted = self.revision
            self._history.clear()
            return self.revision

    # -- inside the lock

    def _put(self, subnet: IPv4Network, public_ip: IPv4Address, ttl: int | None,
             backend_data: str | None) -> Lease:
        # Stored as etcd would give it back: the value encoded and decoded again.
        lease = decode_lease(subnet_key(subnet), encode_attrs(public_ip, backend_data),
                             None if ttl is None else self.clock() + ttl)
        self.leases[subnet] = lease
        self._record(Put(lease))
        return lease

    def _delete(self, subnet: IPv4Network) -> None:
        del self.leases[subnet]
        self._record(Delete(subnet))

    def _record(self, change: Put | Delete) -> None:
        self.revision += 1
        self._history.append((self.revision, change))
        for sink in list(self._sinks.values()):
            sink(WatchBatch((change,), self.revision))

    def _expire(self) -> None:
        now = self.clock()
        for lease in [x for x in self.leases.values()
                      if x.expiration is not None and x.expiration <= now]:
            self._delete(lease.subnet)


if TYPE_CHECKING:  # the protocol, checked statically
    _: Registry = MemoryRegistry()
