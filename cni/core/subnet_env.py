"""The subnet file that flanneld writes (`/run/flannel/subnet.env`), parsed.

Format (flannel's): KEY=VALUE lines, FLANNEL_NETWORK (comma list allowed),
FLANNEL_SUBNET (first usable address of the node subnet with the subnet's prefix,
e.g. 10.244.1.1/24), FLANNEL_MTU, FLANNEL_IPMASQ (true|false).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from .errors import INVALID_NETWORK_CONFIG, CNIError, shown

REQUIRED_KEYS = ("FLANNEL_NETWORK", "FLANNEL_SUBNET", "FLANNEL_MTU", "FLANNEL_IPMASQ")


@dataclass(frozen=True)
class SubnetEnv:
    networks: tuple[IPv4Network, ...]
    subnet: IPv4Network
    gateway: IPv4Address
    mtu: int
    ipmasq: bool


def _bad(path: str, what: str) -> CNIError:
    return CNIError(INVALID_NETWORK_CONFIG, f"invalid subnet file {path}", what)


def parse(text: str, path: str = "subnet file") -> SubnetEnv:
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    missing = [k for k in REQUIRED_KEYS if not values.get(k)]
    if missing:
        raise _bad(path, f"missing {', '.join(missing)}")
    try:
        networks = tuple(
            dict.fromkeys(IPv4Network(n.strip()) for n in values["FLANNEL_NETWORK"].split(","))
        )
        iface = IPv4Interface(values["FLANNEL_SUBNET"])
    except (ValueError, ipaddress.AddressValueError) as e:
        raise _bad(path, str(e)) from None
    mtu = values["FLANNEL_MTU"]
    if not (len(mtu) <= 5 and mtu.isascii() and mtu.isdigit() and 68 <= int(mtu) <= 65535):
        raise _bad(path, f"FLANNEL_MTU={shown(values['FLANNEL_MTU'])} is not an MTU (68..65535)")
    if values["FLANNEL_IPMASQ"] not in ("true", "false"):
        raise _bad(path, f"FLANNEL_IPMASQ={shown(values['FLANNEL_IPMASQ'])} is not true or false")
    subnet = iface.network
    if subnet.prefixlen > 30:
        raise _bad(path, f"FLANNEL_SUBNET {subnet} is too small to allocate from")
    if not any(subnet.subnet_of(n) for n in networks):
        raise _bad(path, f"FLANNEL_SUBNET {subnet} is not inside FLANNEL_NETWORK")
    gateway = subnet.network_address + 1
    return SubnetEnv(networks, subnet, gateway, int(mtu),
                     values["FLANNEL_IPMASQ"] == "true")
