"""Data-plane backends: the implementation of each kind in `core.backend.KINDS`.

Only "udp" exists. A backend's module does the I/O of its data plane (the measured exception
to the core's purity); its header and route logic comes from `flanneld.core`.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from ..core.backend import KINDS, Backend, BackendKind
from .udp import UdpBackend
from .udp_sealed import Encryption

IMPLEMENTATIONS: dict[BackendKind, type[UdpBackend]] = {UdpBackend.kind: UdpBackend}


def create(name: str, *, iface_addr: IPv4Address, iface_mtu: int, port: int,
           network: IPv4Network, subnet: IPv4Network, tun_name: str = "flannel0",
           offload: bool = True, encryption: Encryption | None = None) -> Backend:
    """The backend named `name` (a validated config's `backend_type`), not started."""
    return IMPLEMENTATIONS[KINDS[name]](iface_addr=iface_addr, iface_mtu=iface_mtu, port=port,
                                 network=network, subnet=subnet, tun_name=tun_name,
                                 offload=offload, encryption=encryption)
