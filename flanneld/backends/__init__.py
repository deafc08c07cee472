"""Data-plane backends, registered by name as in flannel; an unknown name is a ConfigError.

Only "udp" exists. A backend's module does the I/O of its data plane (the measured exception
to the core's purity); its header and route logic comes from `flanneld.core`.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from ..core.errors import ConfigError
from .udp import UdpBackend

BACKENDS: dict[str, type[UdpBackend]] = {"udp": UdpBackend}


def create(type_name: str, *, iface_addr: IPv4Address, iface_mtu: int, port: int,
           network: IPv4Network, subnet: IPv4Network, tun_name: str = "flannel0",
           offload: bool = True) -> UdpBackend:
    """The backend registered as `type_name` (case-insensitive, as flannel), not started."""
    cls = BACKENDS.get(type_name.lower())
    if cls is None:
        raise ConfigError(f"backend type {type_name!r} is not supported; known: "
                          f"{', '.join(sorted(BACKENDS))}")
    return cls(iface_addr=iface_addr, iface_mtu=iface_mtu, port=port, network=network,
               subnet=subnet, tun_name=tun_name, offload=offload)
