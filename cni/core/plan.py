"""What ADD will build for one attachment, decided from the config and the subnet file.

Names are derived from (network, container ID, ifname), so DEL, CHECK and GC find
what ADD made without any other memory: the host veth is `veth` + 8 hex digits and
the masquerade chain `PYFL-` + 23 hex digits of a SHA-256 over that triple.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from . import requested
from .attachment import Attachment
from .netconf import NetConf
from .requested import Requested
from .result import Interface, IPConfig, Result, Route
from .subnet_env import SubnetEnv

ALIAS_PREFIX = "pyflannel"
DEFAULT_ROUTE = IPv4Network("0.0.0.0/0")


def _digest(network: str, owner: Attachment) -> str:
    key = f"{network}\0{owner.container_id}\0{owner.ifname}".encode()
    return hashlib.sha256(key).hexdigest()


def host_veth_name(network: str, owner: Attachment) -> str:
    return "veth" + _digest(network, owner)[:8]


def masq_chain_name(network: str, owner: Attachment) -> str:
    return "PYFL-" + _digest(network, owner)[:23]


ALIAS_LIMIT = 255      # IFALIASZ - 1: the kernel refuses a longer alias


def host_veth_alias(network: str, owner: Attachment) -> str:
    """The alias ADD puts on the host veth, so GC can tell whose it is: readable where it
    fits, else the network's and the attachment's digests ('~' is in no name or ID)."""
    plain = f"{ALIAS_PREFIX}:{network}:{owner.container_id}:{owner.ifname}"
    if len(plain.encode()) <= ALIAS_LIMIT:
        return plain
    return f"{_network_alias_prefix(network)}{_digest(network, owner)[:40]}"


def _network_alias_prefix(network: str) -> str:
    return f"{ALIAS_PREFIX}~{hashlib.sha256(network.encode()).hexdigest()[:16]}~"


def is_network_alias(alias: str, network: str) -> bool:
    """Whether `alias` marks a host veth of `network` (':' is in no network name)."""
    return alias.startswith((f"{ALIAS_PREFIX}:{network}:", _network_alias_prefix(network)))


def masq_comment(network: str, owner: Attachment) -> str:
    """The iptables comment on the masquerade rules (the kernel keeps at most 255 bytes)."""
    comment = f"pyflannel: {network} {owner.container_id}"
    return comment if len(comment) <= 200 else comment[:197] + "..."


@dataclass(frozen=True)
class AddPlan:
    owner: Attachment
    bridge: str
    gateway: IPv4Interface          # the bridge's address, e.g. 10.244.1.1/24
    mtu: int
    host_veth: str
    host_alias: str
    hairpin: bool
    routes: tuple[Route, ...]
    masq_chain: str | None          # None: no masquerading
    networks: tuple[IPv4Network, ...]  # the cluster network(s), FLANNEL_NETWORK
    masq_comment: str
    requested: Requested            # the IP and MAC the runtime asked for

    def pod_address(self, ip: IPv4Address) -> IPv4Interface:
        return IPv4Interface(f"{ip}/{self.gateway.network.prefixlen}")


def plan_add(conf: NetConf, env: SubnetEnv, owner: Attachment,
             cni_args: dict[str, str] | None = None) -> AddPlan:
    """Raises the error of a malformed or contradictory IP/MAC request before anything."""
    arg_ips, arg_mac = requested.from_cni_args(cni_args or {})
    wanted = requested.merge(arg_ips + list(conf.requested_ips),
                             [arg_mac, *conf.requested_macs])
    gateway = IPv4Interface(f"{env.gateway}/{env.subnet.prefixlen}")
    if conf.is_default_gateway:
        routes: tuple[Route, ...] = (Route(DEFAULT_ROUTE, env.gateway),)
    else:
        # A network the node subnet covers needs no route: the link's own prefix route
        # is there already (and adding one would fail with EEXIST).
        routes = tuple(Route(n, env.gateway) for n in env.networks
                       if not n.subnet_of(env.subnet))
    masq = conf.ip_masq if conf.ip_masq is not None else not env.ipmasq
    return AddPlan(
        owner=owner,
        bridge=conf.bridge,
        gateway=gateway,
        mtu=conf.mtu or env.mtu,
        host_veth=host_veth_name(conf.name, owner),
        host_alias=host_veth_alias(conf.name, owner),
        hairpin=conf.hairpin_mode,
        routes=routes,
        masq_chain=masq_chain_name(conf.name, owner) if masq else None,
        networks=env.networks,
        masq_comment=masq_comment(conf.name, owner),
        requested=wanted,
    )


def stale_bridge_addresses(found: list[IPv4Interface], gateway: IPv4Interface,
                           networks: tuple[IPv4Network, ...]) -> list[IPv4Interface]:
    """The bridge's addresses that contradict `gateway`: another address in the node
    subnet, or one inside the cluster network (left from an earlier node subnet: its
    route would send that subnet's traffic, now another node's, into the bridge).
    Addresses outside the cluster network are someone else's and stay."""
    return [a for a in found if a != gateway
            and (a.network.overlaps(gateway.network)
                 or any(a.network.overlaps(n) for n in networks))]


@dataclass(frozen=True)
class Built:
    """What the netlink shell reports back after building the attachment."""

    bridge_mac: str
    host_mac: str
    pod_mac: str


def add_result(plan: AddPlan, ip: IPv4Address, built: Built, netns: str,
               dns: dict[str, Any]) -> Result:
    return Result(
        interfaces=(
            Interface(plan.bridge, built.bridge_mac),
            Interface(plan.host_veth, built.host_mac),
            Interface(plan.owner.ifname, built.pod_mac, sandbox=netns, mtu=plan.mtu),
        ),
        ips=(IPConfig(plan.pod_address(ip), plan.gateway.ip, interface=2),),
        routes=plan.routes,
        dns=dns,
    )
