"""The subnet file (`--subnet-file`, /run/flannel/subnet.env) in flannel's format.

    FLANNEL_NETWORK=10.244.0.0/16
    FLANNEL_SUBNET=10.244.1.1/24      (first usable address, with the subnet's prefix)
    FLANNEL_MTU=1472
    FLANNEL_IPMASQ=true

Reading it back (the previous subnet and network at start-up) is tolerant, like godotenv:
comments, blank lines, `export `, quotes; anything unreadable yields None. While running,
the daemon writes the file again when it has vanished or been changed (`drift`).
"""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network


def render(network: IPv4Network, subnet: IPv4Network, mtu: int, ipmasq: bool) -> str:
    gateway = IPv4Interface((int(subnet.network_address) + 1, subnet.prefixlen))
    return (f"FLANNEL_NETWORK={network}\n"
            f"FLANNEL_SUBNET={gateway}\n"
            f"FLANNEL_MTU={mtu}\n"
            f"FLANNEL_IPMASQ={'true' if ipmasq else 'false'}\n")


def drift(found: str | None, wanted: str) -> str | None:
    """Why the file must be written again, given what it holds (`found`, None when it does
    not exist) and what the daemon wrote: "was missing", "had been changed", or None."""
    if found is None:
        return "was missing"
    return None if found == wanted else "had been changed"


def _value(text: str, key: str) -> str | None:
    """The last value given to `key` in dotenv text, unquoted."""
    found = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            else:
                value = value.split(" #", 1)[0].strip()
            found = value
    return found


def _cidr(value: str | None) -> IPv4Network | None:
    try:
        return IPv4Interface(value).network if value and "/" in value else None
    except ValueError:
        return None


def previous_subnet(text: str) -> IPv4Network | None:
    """The node subnet FLANNEL_SUBNET names (10.244.1.1/24 -> 10.244.1.0/24), else None."""
    return _cidr(_value(text, "FLANNEL_SUBNET"))

