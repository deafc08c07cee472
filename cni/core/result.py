"""The ADD result, and its JSON in the shape of each spec version.

0.3.0, 0.3.1 and 0.4.0 carry "version" in every `ips` entry; 1.0.0 and 1.1.0 do not.
`from_json` reads a prevResult of any supported version back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, ip_interface
from typing import Any

from . import version
from .errors import DECODING_FAILURE, CNIError, shown


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int = 0


@dataclass(frozen=True)
class IPConfig:
    address: IPv4Interface
    gateway: IPv4Address | None = None
    interface: int | None = None


@dataclass(frozen=True)
class Route:
    dst: IPv4Network
    gw: IPv4Address | None = None


@dataclass(frozen=True)
class Result:
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: dict[str, Any] = field(default_factory=dict)

    def to_json(self, cni_version: str) -> dict[str, Any]:
        with_ip_version = version.has_ip_version_field(cni_version)
        with_mtu = version.at_least(cni_version, "1.1.0")
        out: dict[str, Any] = {"cniVersion": cni_version}
        if self.interfaces:
            out["interfaces"] = [_iface_json(i, with_mtu) for i in self.interfaces]
        out["ips"] = [_ip_json(ip, with_ip_version) for ip in self.ips]
        if self.routes:
            out["routes"] = [_route_json(r) for r in self.routes]
        out["dns"] = dict(self.dns)
        return out


def _iface_json(iface: Interface, with_mtu: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": iface.name}
    if iface.mac:
        out["mac"] = iface.mac
    if with_mtu and iface.mtu:
        out["mtu"] = iface.mtu
    if iface.sandbox:
        out["sandbox"] = iface.sandbox
    return out


def _ip_json(ip: IPConfig, with_ip_version: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if with_ip_version:
        out["version"] = str(ip.address.version)
    out["address"] = str(ip.address)
    if ip.gateway is not None:
        out["gateway"] = str(ip.gateway)
    if ip.interface is not None:
        out["interface"] = ip.interface
    return out


def _route_json(route: Route) -> dict[str, str]:
    out = {"dst": str(route.dst)}
    if route.gw is not None:
        out["gw"] = str(route.gw)
    return out


def _bad(what: str) -> CNIError:
    return CNIError(DECODING_FAILURE, "cannot decode prevResult", what)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _bad(f"{what}: {shown(value)} is not a string")
    return value


def _optional_text(entry: dict[str, Any], key: str, what: str) -> str:
    value = entry.get(key)
    return "" if value is None else _text(value, f"{what}.{key}")


def _objects(raw: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """raw[key] as a list of objects ([] when absent or null)."""
    items = raw.get(key)
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise _bad(f"{key}: {shown(items)} is not a list of objects")
    return items


def _number(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _bad(f"{what}: {shown(value)} is not a number")
    return value


def _interface(entry: dict[str, Any]) -> Interface:
    return Interface(name=_text(entry.get("name"), "interfaces[].name"),
                     mac=_optional_text(entry, "mac", "interfaces[]"),
                     sandbox=_optional_text(entry, "sandbox", "interfaces[]"),
                     mtu=_number(entry.get("mtu") or 0, "interfaces[].mtu"))


def _ip(entry: dict[str, Any]) -> IPConfig | None:
    try:
        address = ip_interface(_text(entry.get("address"), "ips[].address"))
        if address.version != 4:
            return None
        gw = _optional_text(entry, "gateway", "ips[]")
        index = entry.get("interface")
        return IPConfig(IPv4Interface(address), IPv4Address(gw) if gw else None,
                        None if index is None else _number(index, "ips[].interface"))
    except ValueError as e:
        raise _bad(f"ips[]: {e}") from None


def _route(entry: dict[str, Any]) -> Route | None:
    dst = _text(entry.get("dst"), "routes[].dst")
    gw = _optional_text(entry, "gw", "routes[]")
    if ":" in dst:
        return None
    try:
        return Route(IPv4Network(dst), IPv4Address(gw) if gw else None)
    except ValueError as e:
        raise _bad(f"routes[]: {e}") from None


def from_json(raw: dict[str, Any]) -> Result:
    """Read a result (prevResult) of any supported version; IPv6 entries are kept out.
    Every field is type-checked: a wrong shape is a decoding error naming the field."""
    if not isinstance(raw, dict):
        raise _bad(f"{shown(raw)} is not an object")
    interfaces = tuple(_interface(i) for i in _objects(raw, "interfaces"))
    ips = tuple(ip for ip in map(_ip, _objects(raw, "ips") or _objects(raw, "ip")) if ip)
    routes = tuple(r for r in map(_route, _objects(raw, "routes")) if r)
    dns = raw.get("dns")
    return Result(interfaces, ips, routes, dns if isinstance(dns, dict) else {})
