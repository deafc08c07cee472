"""IP allocation with host-local's guarantees, over any `Store`.

One reservation per IP, created exclusively; round-robin after the last reserved IP;
never the network, gateway or broadcast address; released by container ID + ifname.
The caller holds the store's lock around `allocate` and `release`.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from .attachment import Attachment
from .errors import ALREADY_EXISTS, IP_EXHAUSTED, CNIError, shown
from .requested import Requested, code_for

NOTHING = Requested()


class Store(Protocol):
    def reserve(self, ip: IPv4Address, owner: Attachment) -> bool:
        """Create the reservation for `ip` unless one exists; True when created."""

    def last_reserved(self) -> IPv4Address | None: ...

    def set_last_reserved(self, ip: IPv4Address) -> None: ...

    def reservations(self) -> dict[IPv4Address, Attachment | None]:
        """Every reserved IP and its owner (None when the owner is unreadable)."""

    def release(self, ip: IPv4Address) -> None: ...


def usable_range(subnet: IPv4Network, gateway: IPv4Address) -> tuple[IPv4Address, IPv4Address]:
    first, last = subnet.network_address + 1, subnet.broadcast_address - 1
    if first == gateway:
        first += 1
    return first, last


def candidates(subnet: IPv4Network, gateway: IPv4Address,
               last: IPv4Address | None) -> Iterator[IPv4Address]:
    """Every allocatable IP once, starting after `last` and wrapping around."""
    first, end = usable_range(subnet, gateway)
    size = int(end) - int(first) + 1
    start = int(last) + 1 if last is not None and first <= last <= end else int(first)
    for i in range(size):
        ip = IPv4Address(int(first) + (start - int(first) + i) % size)
        if ip != gateway:
            yield ip


def owned_by(store: Store, owner: Attachment) -> list[IPv4Address]:
    return sorted(ip for ip, who in store.reservations().items() if who == owner)


def allocate(store: Store, subnet: IPv4Network, gateway: IPv4Address,
             owner: Attachment, requested: Requested = NOTHING) -> IPv4Address:
    held = owned_by(store, owner)
    if held:
        raise CNIError(
            ALREADY_EXISTS,
            f"{held[0]} has been allocated to {owner.container_id}/{owner.ifname}, "
            "duplicate allocation is not allowed",
        )
    if requested.ip is not None:
        return _allocate_requested(store, subnet, gateway, owner, requested)
    for ip in candidates(subnet, gateway, store.last_reserved()):
        if store.reserve(ip, owner):
            store.set_last_reserved(ip)
            return ip
    first, end = usable_range(subnet, gateway)
    raise CNIError(IP_EXHAUSTED, f"no IP addresses available in range {first}-{end}",
                   f"subnet {subnet} is full")


def _allocate_requested(store: Store, subnet: IPv4Network, gateway: IPv4Address,
                        owner: Attachment, requested: Requested) -> IPv4Address:
    """The requested IP if it is allocatable and free; the round-robin position stays."""
    ip, source = requested.ip, requested.ip_source
    assert ip is not None
    first, end = usable_range(subnet, gateway)
    problem = ""
    if ip not in subnet:
        problem = f"is outside this node's subnet {subnet}"
    elif ip == gateway:
        problem = "is the gateway (the bridge's address)"
    elif not first <= ip <= end:
        problem = f"is the network or broadcast address of {subnet}"
    if problem:
        raise CNIError(code_for(source), f"requested IP {ip} ({source}) cannot be allocated",
                       f"{ip} {problem}")
    if not store.reserve(ip, owner):
        who = store.reservations().get(ip)
        holder = f"{who.container_id}/{who.ifname}" if who else "an unreadable reservation"
        raise CNIError(ALREADY_EXISTS, f"requested IP {ip} ({source}) is already allocated",
                       f"held by {shown(holder)}")
    return ip


def release(store: Store, owner: Attachment) -> list[IPv4Address]:
    held = owned_by(store, owner)
    for ip in held:
        store.release(ip)
    return held


def stale(store: Store, valid: set[Attachment]) -> list[IPv4Address]:
    """Reservations whose owner is not among the valid attachments (GC)."""
    return sorted(ip for ip, who in store.reservations().items() if who not in valid)
