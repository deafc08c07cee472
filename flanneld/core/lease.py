"""Leases and their etcd encoding, byte for byte as flannel writes them.

Key: `<prefix>/subnets/10.244.1.0-24` (dual-stack keys append `&fc00::-64`; only the IPv4
part is read). Value: `{"PublicIP":"10.0.0.1","PublicIPv6":null}` for a clear udp lease,
exactly as flannel's udp backend writes it. A lease that advertises something (the
encrypted udp mode's keys) adds `"BackendType":"udp","BackendData":{...}`, as flannel's
other backends do; other keys are tolerated and ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address, IPv4Network

from .errors import LeaseFormatError

# flannel's subnetRegex, unanchored at the start (FindStringSubmatch), so a full etcd key
# parses too; the unescaped dots are flannel's. ASCII digits only, like Go's \d.
SUBNET_KEY = re.compile(r"(\d+\.\d+.\d+.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$", re.ASCII)


@dataclass(frozen=True)
class Lease:
    """A node's subnet and the underlay address peers send its traffic to.

    `expiration` is the etcd lease's expiry on the caller's clock, None for a reservation
    (a key without an etcd lease, which never expires)."""

    subnet: IPv4Network
    public_ip: IPv4Address
    expiration: float | None = None
    backend_data: str | None = None  # BackendData as compact JSON with sorted keys, if any


def subnet_key(subnet: IPv4Network) -> str:
    """The last path segment of a lease key: 10.244.1.0/24 -> "10.244.1.0-24"."""
    return f"{subnet.network_address}-{subnet.prefixlen}"


def parse_subnet_key(key: str) -> IPv4Network | None:
    """The IPv4 subnet a lease key (last segment or full path) names; None for anything else.

    As in flannel, the prefix length must be 0..31. A key with host bits set is refused
    (None) rather than masked: it would not round-trip to the key it came from."""
    m = SUBNET_KEY.search(key)
    if m is None or int(m[2]) > 31:
        return None
    try:
        return IPv4Network(f"{m[1]}/{int(m[2])}")
    except ValueError:
        return None


def encode_attrs(public_ip: IPv4Address, backend_data: str | None = None,
                 backend_type: str = "udp") -> str:
    """flannel's LeaseAttrs JSON (compact, PublicIP first, PublicIPv6 null); with
    `backend_data` (JSON text) also BackendType and BackendData, as flannel orders them."""
    text = json.dumps({"PublicIP": str(public_ip), "PublicIPv6": None}, separators=(",", ":"))
    if backend_data is None:
        return text
    return (f'{text[:-1]},"BackendType":{json.dumps(backend_type)},'
            f'"BackendData":{backend_data}}}')


def backend_data_text(data: object) -> str:
    """BackendData as stored in a Lease: compact JSON with sorted keys."""
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _object(value: str | bytes) -> object:
    try:
        return json.loads(value)
    except (ValueError, UnicodeDecodeError):
        raise LeaseFormatError(f"lease value is not JSON: {value[:80]!r}") from None


def decode_attrs(value: str | bytes) -> IPv4Address:
    """The PublicIP of a lease value; LeaseFormatError when the value is not flannel's JSON."""
    return _public_ip(_object(value), value)


def _public_ip(obj: object, value: str | bytes) -> IPv4Address:
    text = obj.get("PublicIP") if isinstance(obj, dict) else None
    if not isinstance(text, str):
        raise LeaseFormatError(f"lease value has no PublicIP string: {value[:80]!r}")
    try:
        return IPv4Address(text)
    except AddressValueError:
        raise LeaseFormatError(f"lease PublicIP {text!r} is not an IPv4 address") from None


def decode_lease(key: str, value: str | bytes, expiration: float | None) -> Lease:
    """A Lease from an etcd key (segment or full path) and value; LeaseFormatError if bad."""
    subnet = parse_subnet_key(key)
    if subnet is None:
        raise LeaseFormatError(f"lease key {key!r} does not name a subnet")
    obj = _object(value)
    public_ip = _public_ip(obj, value)
    data = obj.get("BackendData") if isinstance(obj, dict) else None
    return Lease(subnet, public_ip, expiration,
                 None if data is None else backend_data_text(data))
