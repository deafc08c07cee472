"""The network config stored at `<etcd-prefix>/config`, decoded, defaulted and validated.

Flannel's rules (`subnet.ParseConfig`, `CheckNetworkConfig`): `Network` is mandatory;
SubnetLen defaults to 24 if Network is /22 or larger, else Network's prefix + 2, and must
leave room for four subnets; SubnetMin defaults to the second subnet, SubnetMax to the last;
both lie in Network on a SubnetLen boundary. Backend defaults to udp on port 8285.
Keys match case-insensitively and `null` means absent, as with Go's encoding/json;
unknown keys are ignored. Only IPv4 and the udp backend are supported. `differences` says
how two configs disagree once defaulted (etcd's and a file's, say).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError
from typing import Any

from .backend import KINDS, UDP
from .errors import ConfigError
from .sealing import ALGORITHMS

DEFAULT_BACKEND = UDP  # flannel's default Backend.Type
DEFAULT_ENCRYPTION = "aes-256-gcm"  # "Encryption": true (bench/README.md: the faster here)


@dataclass(frozen=True)
class NetworkConfig:
    network: IPv4Network
    subnet_len: int
    subnet_min: IPv4Address
    subnet_max: IPv4Address
    backend_type: str
    backend_port: int
    encryption: str | None = None   # Backend.Encryption: an AEAD of sealing.ALGORITHMS

    @property
    def subnet_size(self) -> int:
        return 1 << (32 - self.subnet_len)

    def fits(self, subnet: IPv4Network) -> bool:
        """Whether a lease's subnet is usable under this config (flannel's isSubnetConfigCompat)."""
        return (subnet.prefixlen == self.subnet_len
                and self.subnet_min <= subnet.network_address <= self.subnet_max)


# Each field of NetworkConfig by flannel's key name.
_KEYS = (("Network", "network"), ("SubnetLen", "subnet_len"), ("SubnetMin", "subnet_min"),
         ("SubnetMax", "subnet_max"), ("Backend.Type", "backend_type"),
         ("Backend.Port", "backend_port"), ("Backend.Encryption", "encryption"))


def differences(a: NetworkConfig, b: NetworkConfig) -> list[str]:
    """Every key whose defaulted value differs, as "<key> <a's> != <b's>" (e.g.
    "Network 10.244.0.0/16 != 10.245.0.0/16"); empty when both mean the same network."""
    return [f"{key} {getattr(a, name)} != {getattr(b, name)}" for key, name in _KEYS
            if getattr(a, name) != getattr(b, name)]


def _bad(msg: str) -> ConfigError:
    return ConfigError(f"invalid network config: {msg}")


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    """The value of `key` (last case-insensitive match, as Go decodes), None when absent or null."""
    value = None
    for k, v in obj.items():
        if k.lower() == key.lower():
            value = v
    if value is None:
        return None
    bools = kind is bool or (isinstance(kind, tuple) and bool in kind)
    if not isinstance(value, kind) or (isinstance(value, bool) and not bools):
        raise _bad(f"{key} must be {what}, got {json.dumps(value)}")
    return value


def _address(obj: dict[str, Any], key: str) -> IPv4Address | None:
    text = _get(obj, key, str, "an IPv4 address string")
    if text is None:
        return None
    try:
        return IPv4Address(text)
    except AddressValueError:
        raise _bad(f"{key} {text!r} is not an IPv4 address") from None


def _network(obj: dict[str, Any]) -> IPv4Network:
    text = _get(obj, "Network", str, 'an IPv4 CIDR string such as "10.244.0.0/16"')
    if not text:
        raise _bad("Network is missing; define it as an IPv4 CIDR such as \"10.244.0.0/16\"")
    try:
        if "/" not in text:
            raise ValueError
        return IPv4Network(text, strict=False)  # Go's ParseCIDR masks host bits too
    except (AddressValueError, NetmaskValueError, ValueError):
        raise _bad(f"Network {text!r} is not an IPv4 CIDR") from None


def _subnet_len(obj: dict[str, Any], network: IPv4Network) -> int:
    length = _get(obj, "SubnetLen", int, "an integer")
    prefix = network.prefixlen
    if not length:  # absent, null or 0: flannel's default
        if prefix > 28:
            raise _bad(f"Network {network} is too small; minimum useful network prefix is /28")
        return 24 if prefix <= 22 else prefix + 2
    if length < 0 or length > 30:
        raise _bad(f"SubnetLen {length} is out of range; it must be at most 30")
    if length < prefix + 2:
        raise _bad(f"SubnetLen {length} is too short for Network {network}; the network must "
                   f"hold at least four subnets (SubnetLen >= {prefix + 2})")
    return int(length)


def _backend(obj: dict[str, Any]) -> tuple[str, int, str | None]:
    backend = _get(obj, "Backend", dict, "an object")
    if backend is None:
        return DEFAULT_BACKEND.name, DEFAULT_BACKEND.default_port, None
    name = _get(backend, "Type", str, "a string")
    known = ", ".join(KINDS)
    if not name:
        raise _bad(f"Backend.Type is missing; only {known} is available")
    kind = KINDS.get(name.lower())
    if kind is None:
        raise _bad(f"backend type {name!r} is not supported; only {known} is available")
    port = _get(backend, "Port", int, "an integer")
    if port is None or port == 0:  # 0 is Go's zero value: the default
        port = kind.default_port
    if not 1 <= port <= 65535:
        raise _bad(f"Backend.Port {port} is not a UDP port (1..65535)")
    return kind.name, port, _encryption(backend)


def _encryption(backend: dict[str, Any]) -> str | None:
    """Backend.Encryption: absent, null, false or "" for clear text; true for the default
    algorithm; else an algorithm's name (case-insensitive)."""
    value = _get(backend, "Encryption", (str, bool),
                 f"true, false or one of {', '.join(ALGORITHMS)}")
    if value is None or value is False or value == "":
        return None
    if value is True:
        return DEFAULT_ENCRYPTION
    if value.lower() not in ALGORITHMS:
        raise _bad(f"Backend.Encryption {value!r} is not an algorithm pyflannel knows; use "
                   f"one of {', '.join(ALGORITHMS)}")
    return str(value.lower())


def parse(text: str | bytes) -> NetworkConfig:
    """Decode the JSON value of `<prefix>/config`; ConfigError says which key is wrong."""
    try:
        obj = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise _bad(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise _bad(f"expected a JSON object, got {type(obj).__name__}")
    if _get(obj, "EnableIPv4", bool, "true or false") is False:
        raise _bad("EnableIPv4 is false; pyflannel supports IPv4 networks only")
    if _get(obj, "EnableIPv6", bool, "true or false"):
        raise _bad("EnableIPv6 is true; IPv6 is not supported yet")
    network = _network(obj)
    length = _subnet_len(obj, network)
    size = 1 << (32 - length)
    lo = _address(obj, "SubnetMin")
    hi = _address(obj, "SubnetMax")
    if lo is None:  # skip the first subnet: its .0 would be the network address
        lo = network.network_address + size
    if hi is None:
        hi = IPv4Address(int(network.broadcast_address) + 1 - size)
    for key, addr in (("SubnetMin", lo), ("SubnetMax", hi)):
        if addr not in network:
            raise _bad(f"{key} {addr} is not in the range of Network {network}")
        if int(addr) % size:
            raise _bad(f"{key} {addr} is not on a SubnetLen (/{length}) boundary")
    if lo > hi:
        raise _bad(f"SubnetMin {lo} is above SubnetMax {hi}")
    backend_type, port, encryption = _backend(obj)
    return NetworkConfig(network, length, lo, hi, backend_type, port, encryption)
