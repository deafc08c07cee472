"""In-memory fakes for the core's protocols."""

from __future__ import annotations

from ipaddress import IPv4Address

from cni.core.attachment import Attachment
from cni.core.ipam import Store


class MemoryStore:
    """`cni.core.ipam.Store` in a dict: reservations are exclusive, as on disk."""

    def __init__(self, held: dict[IPv4Address, Attachment | None] | None = None,
                 last: IPv4Address | None = None) -> None:
        self.held: dict[IPv4Address, Attachment | None] = dict(held or {})
        self.last = last

    def reserve(self, ip: IPv4Address, owner: Attachment) -> bool:
        if ip in self.held:
            return False
        self.held[ip] = owner
        return True

    def last_reserved(self) -> IPv4Address | None:
        return self.last

    def set_last_reserved(self, ip: IPv4Address) -> None:
        self.last = ip

    def reservations(self) -> dict[IPv4Address, Attachment | None]:
        return dict(self.held)

    def release(self, ip: IPv4Address) -> None:
        self.held.pop(ip, None)


_: Store = MemoryStore()     # the fake keeps the protocol (checked by mypy)
