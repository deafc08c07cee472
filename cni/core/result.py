"""The ADD result, and its JSON in the shape of each spec version.

0.3.0, 0.3.1 and 0.4.0 carry "version" in every `ips` entry; 1.0.0 and 1.1.0 do not.
`from_json` reads a prevResult of any supported version back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, ip_interface
from typing import Any

from . import version
from .errors import DECODING_FAILURE, CNIError


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

    def to_json(self, cni_version: str) -> dict:
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


def _iface_json(iface: Interface, with_mtu: bool) -> dict:
    out: dict[str, Any] = {"name": iface.name}
    if iface.mac:
        out["mac"] = iface.mac
    if with_mtu and iface.mtu:
        out["mtu"] = iface.mtu
    if iface.sandbox:
        out["sandbox"] = iface.sandbox
    return out


def _ip_json(ip: IPConfig, with_ip_version: bool) -> dict:
    out: dict[str, Any] = {}
    if with_ip_version:
        out["version"] = str(ip.address.version)
    out["address"] = str(ip.address)
    if ip.gateway is not None:
        out["gateway"] = str(ip.gateway)
    if ip.interface is not None:
        out["interface"] = ip.interface
    return out


def _route_json(route: Route) -> dict:
    out = {"dst": str(route.dst)}
    if route.gw is not None:
        out["gw"] = str(route.gw)
    return out


def _bad(what: str) -> CNIError:
    return CNIError(DECODING_FAILURE, "cannot decode prevResult", what)


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def from_json(raw: dict) -> Result:
    """Read a result (prevResult) of any supported version; IPv6 entries are kept out."""
    try:
        interfaces = tuple(
            Interface(name=i["name"], mac=i.get("mac", ""), sandbox=i.get("sandbox", ""),
                      mtu=int(i.get("mtu", 0)))
            for i in raw.get("interfaces") or ()
        )
        ips = []
        for entry in raw.get("ips") or raw.get("ip") or ():
            address = ip_interface(_text(entry["address"]))
            if address.version != 4:
                continue
            gw = entry.get("gateway")
            index = entry.get("interface")
            if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
                raise ValueError(f"interface index {index!r} is not a number")
            ips.append(IPConfig(address, IPv4Address(_text(gw)) if gw else None, index))
        routes = []
        for entry in raw.get("routes") or ():
            dst = IPv4Network(entry["dst"]) if ":" not in entry["dst"] else None
            if dst is not None:
                gw = entry.get("gw")
                routes.append(Route(dst, IPv4Address(gw) if gw else None))
        dns = raw.get("dns") or {}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise _bad(f"{type(e).__name__}: {e}") from None
    return Result(interfaces, tuple(ips), tuple(routes), dns if isinstance(dns, dict) else {})
