"""A specific IP and MAC the runtime asks for (`podman run --ip … --mac-address …`).

Three places can ask, as in the reference plugins: `CNI_ARGS` `IP=` (a comma list, as
host-local reads it) and `MAC=`; the config's `args.cni.ips` / `args.cni.mac`; and the
runtime's `runtimeConfig.ips` / `runtimeConfig.mac` (the CNI conventions' capabilities
`ips` and `mac`). Every IP asked for must be the same one IPv4 address (an attachment has
one); for the MAC the later source wins, as in bridge. A malformed value is refused with
the code of where it came from: 4 for CNI_ARGS, 7 for the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, ip_interface

from .errors import INVALID_ENVIRONMENT, INVALID_NETWORK_CONFIG, CNIError, shown

CNI_ARGS_IP, CNI_ARGS_MAC = "CNI_ARGS IP", "CNI_ARGS MAC"
ARGS_IPS, ARGS_MAC = "args.cni.ips", "args.cni.mac"
RUNTIME_IPS, RUNTIME_MAC = "runtimeConfig.ips", "runtimeConfig.mac"


def code_for(source: str) -> int:
    return INVALID_ENVIRONMENT if source.startswith("CNI_ARGS") else INVALID_NETWORK_CONFIG


@dataclass(frozen=True)
class Wanted:
    """One requested value and where it came from (named in every error about it)."""

    value: str
    source: str


@dataclass(frozen=True)
class Requested:
    ip: IPv4Address | None = None
    ip_source: str = ""
    mac: str | None = None


def parse_ip(wanted: Wanted) -> IPv4Address:
    """'10.244.1.5' or '10.244.1.5/24' (the prefix is not used, as in host-local)."""
    try:
        address = ip_interface(wanted.value.strip()).ip
    except ValueError:
        raise CNIError(code_for(wanted.source), f"invalid {wanted.source}",
                       f"{shown(wanted.value)} is not an IP address") from None
    if address.version != 4:
        raise CNIError(code_for(wanted.source), f"invalid {wanted.source}",
                       f"{address} is IPv6; pyflannel allocates IPv4 only")
    assert isinstance(address, IPv4Address)
    return address


def parse_mac(wanted: Wanted) -> str:
    """A unicast Ethernet MAC ('c2:b0:57:49:47:f1', or with '-'), lower-case with ':'."""
    text = wanted.value.strip().lower().replace("-", ":")
    parts = text.split(":")
    problem = ""
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p)
                                  for p in parts):
        problem = "is not a MAC address (six hex octets)"
    elif int(parts[0], 16) & 1:
        problem = "is a multicast address"
    elif text == "00:00:00:00:00:00":
        problem = "is all zeros"
    if problem:
        raise CNIError(code_for(wanted.source), f"invalid {wanted.source}",
                       f"{shown(wanted.value)} {problem}")
    return text


def from_cni_args(args: dict[str, str]) -> tuple[list[Wanted], Wanted | None]:
    """The IPs and the MAC that CNI_ARGS asks for."""
    ips = [Wanted(v, CNI_ARGS_IP) for v in args.get("IP", "").split(",") if v.strip()]
    mac = Wanted(args["MAC"], CNI_ARGS_MAC) if args.get("MAC") else None
    return ips, mac


def merge(ips: list[Wanted], macs: list[Wanted | None]) -> Requested:
    """What the attachment gets: the one IPv4 address every source agrees on (None when
    none asks), and the last MAC given (sources in the order CNI_ARGS, args, runtimeConfig).
    """
    chosen: tuple[IPv4Address, str] | None = None
    for wanted in ips:
        ip = parse_ip(wanted)
        if chosen is not None and chosen[0] != ip:
            raise CNIError(code_for(wanted.source), "more than one IP requested",
                           f"{chosen[0]} ({chosen[1]}) and {ip} ({wanted.source}): "
                           "an attachment has one IPv4 address")
        if chosen is None:
            chosen = (ip, wanted.source)
    mac = None
    for asked in macs:
        if asked is not None:
            mac = parse_mac(asked)
    return Requested(chosen[0] if chosen else None, chosen[1] if chosen else "", mac)
