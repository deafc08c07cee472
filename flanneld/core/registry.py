"""The registry seam: every operation the daemon, `leases` and `network_config` need of
the store that holds the network config and the leases (etcd in production).

Like flannel's `subnet.Registry` (`pkg/subnet/etcd/registry.go`): narrow and policy-free;
which subnet to lease and when to renew is `lease_policy`'s and `control`'s. Two
implementations, held to one contract by the same tests: `io.etcd.EtcdRegistry` and
`io.memory.MemoryRegistry`. Every operation raises `EtcdUnavailable` when the store cannot
be reached; the caller retries.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from .lease import Lease
from .lease_watch import Sink


class ConfigStore(Protocol):
    """The network config at `<prefix>/config`."""

    def get_network_config(self) -> str | None:
        """The stored text; None when the key does not exist."""
        ...

    def create_network_config(self, text: str) -> tuple[bool, str]:
        """Write `text` unless a config exists, atomically: (True, text) when written,
        else (False, the text already there)."""
        ...


class LeaseStore(Protocol):
    """The leases under `<prefix>/subnets/`."""

    def list_leases(self) -> tuple[list[Lease], int]:
        """Every well-formed lease and the revision of the listing: a watch from
        revision + 1 misses nothing."""
        ...

    def create_lease(self, subnet: IPv4Network, public_ip: IPv4Address,
                     ttl: int | None, backend_data: str | None = None) -> Lease:
        """Create the subnet's key if absent, expiring after `ttl` s (None: a reservation,
        which never expires), advertising `backend_data` (JSON text; None: nothing);
        LeaseConflict when the key exists."""
        ...

    def renew_lease(self, subnet: IPv4Network, public_ip: IPv4Address,
                    ttl: int | None, backend_data: str | None = None) -> Lease:
        """Put the subnet's key whether or not it exists, with a fresh expiry of `ttl` s
        (None: a reservation), advertising `backend_data`."""
        ...

    def delete_lease(self, subnet: IPv4Network) -> None:
        """Delete the subnet's key; a key already gone is fine."""
        ...

    def watch_leases(self, start_revision: int, sink: Sink) -> Callable[[], None]:
        """Send every change from `start_revision` on to `sink` (a WatchBatch per
        revision, or per response; then at most one WatchBroken, after which the watch is
        over); return a function that cancels it, after which the sink hears nothing."""
        ...


class Registry(ConfigStore, LeaseStore, Protocol):
    """Both halves: what the daemon is given."""
