"""Finds the underlay interface (`--iface`, else the default route's) and its address and MTU."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address

from pyroute2 import IPRoute

from ..core.errors import ConfigError


@dataclass(frozen=True)
class Iface:
    name: str
    index: int
    address: IPv4Address  # its first IPv4 address: the UDP socket binds here
    mtu: int


def _ipv4_addresses(ipr: IPRoute, index: int) -> list[IPv4Address]:
    return [IPv4Address(a.get_attr("IFA_ADDRESS"))
            for a in ipr.get_addr(family=2, index=index)]


def _by_index(ipr: IPRoute, index: int, wanted: IPv4Address | None = None) -> Iface:
    link = ipr.link("get", index=index)[0]
    name = link.get_attr("IFLA_IFNAME")
    addresses = _ipv4_addresses(ipr, index)
    if not addresses:
        raise ConfigError(f"interface {name} has no IPv4 address")
    return Iface(name, index, wanted or addresses[0], link.get_attr("IFLA_MTU"))


def _find(ipr: IPRoute, spec: str) -> Iface | None:
    try:
        addr = ip_address(spec)
    except ValueError:
        found = ipr.link_lookup(ifname=spec)
        return _by_index(ipr, found[0]) if found else None
    for a in ipr.get_addr(family=2):
        if a.get_attr("IFA_ADDRESS") == str(addr):
            return _by_index(ipr, a["index"], IPv4Address(addr))
    return None


def _default_route_index(ipr: IPRoute) -> int | None:
    for route in ipr.get_routes(family=2, table=254):
        index: int | None = route.get_attr("RTA_OIF")
        if route["dst_len"] == 0 and index:
            return index
    return None


def select(specs: list[str]) -> Iface:
    """The first of `specs` (names or addresses) that exists here; with none given, the
    interface of the default route. ConfigError when nothing matches."""
    with IPRoute() as ipr:
        for spec in specs:
            found = _find(ipr, spec)
            if found is not None:
                return found
        if specs:
            raise ConfigError(f"none of the interfaces given by --iface exists here: "
                              f"{', '.join(specs)}")
        index = _default_route_index(ipr)
        if index is None:
            raise ConfigError("no default route to pick the interface from: pass --iface")
        return _by_index(ipr, index)
