"""An in-memory lease registry and network config store with etcd's create-if-absent
semantics, for unit tests."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network

from flanneld.core.errors import EtcdUnavailable, LeaseConflict
from flanneld.core.lease import Lease


class MemoryRegistry:
    """Leases by subnet and the network config. `before_create` (and
    `before_create_config`) let a test slip in a racing node's create; `down` makes every
    call fail as if etcd were unreachable."""

    def __init__(self, now: float = 1000.0) -> None:
        self.leases: dict[IPv4Network, Lease] = {}
        self.now = now
        self.revision = 1
        self.down = False
        self.before_create: Callable[[IPv4Network], None] | None = None
        self.calls: list[str] = []
        self.watches: list[tuple[int, Callable]] = []
        self.config: str | None = None
        self.before_create_config: Callable[[], None] | None = None

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            raise EtcdUnavailable(f"etcd unreachable during {name}")

    def _lease(self, subnet: IPv4Network, ip: IPv4Address, ttl: int | None) -> Lease:
        self.revision += 1
        lease = Lease(subnet, ip, None if ttl is None else self.now + ttl)
        self.leases[subnet] = lease
        return lease

    def get_network_config(self) -> str | None:
        self._call("get config")
        return self.config

    def create_network_config(self, text: str) -> tuple[bool, str]:
        self._call("create config")
        if self.before_create_config is not None:
            self.before_create_config()
        if self.config is not None:
            return False, self.config
        self.config = text
        return True, text

    def list_leases(self) -> tuple[list[Lease], int]:
        self._call("list")
        return list(self.leases.values()), self.revision

    def create_lease(self, subnet: IPv4Network, public_ip: IPv4Address,
                     ttl: int | None) -> Lease:
        self._call("create")
        if self.before_create is not None:
            self.before_create(subnet)
        if subnet in self.leases:
            raise LeaseConflict(f"subnets/{subnet} exists")
        return self._lease(subnet, public_ip, ttl)

    def renew_lease(self, subnet: IPv4Network, public_ip: IPv4Address,
                    ttl: int | None) -> Lease:
        self._call("renew")
        return self._lease(subnet, public_ip, ttl)

    def watch_leases(self, start_revision: int, sink: Callable) -> Callable[[], None]:
        self._call("watch")
        self.watches.append((start_revision, sink))
        return lambda: self.calls.append("cancel")

    def delete_lease(self, subnet: IPv4Network) -> None:
        self._call("delete")
        self.revision += 1
        self.leases.pop(subnet, None)
