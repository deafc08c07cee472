"""Netlink through pyroute2: the bridge, the veth pair, addresses and routes.

The functions take an rtnetlink socket (`IPRoute`) in the node's namespace or, from
`pod_socket`, in the pod's. Every kernel failure becomes a CNIError naming the object.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, Protocol

from pyroute2.iproute.linux import IPRoute as IPRoute  # the commands' socket, re-exported
from pyroute2.netlink.exceptions import NetlinkError

from ..core import arp
from ..core.errors import ALREADY_EXISTS, KERNEL_FAILURE, CNIError
from ..core.plan import stale_bridge_addresses
from ..core.result import Route
from .netns import inside

FORWARDING = "/proc/sys/net/ipv4/ip_forward"
BR_STATE_FORWARDING = 3
FORWARDING_WAIT = 1.0       # seconds a new bridge port may take to forward


@contextmanager
def kernel(action: str) -> Iterator[None]:
    try:
        yield
    except NetlinkError as e:
        raise CNIError(KERNEL_FAILURE, f"cannot {action}", e.args[1] if len(e.args) > 1
                       else str(e)) from None


def pod_socket(fd: int, path: str) -> IPRoute:
    with inside(fd, path):
        return IPRoute()


class Message(Protocol):
    """What is read of a pyroute2 netlink message (pyroute2 has no type hints)."""

    def __getitem__(self, key: str) -> Any: ...

    def get_attr(self, name: str) -> Any: ...


@dataclass(frozen=True)
class LinkView:
    index: int
    name: str
    kind: str
    mac: str
    master: int
    peer_index: int
    alias: str
    up: bool


def _view(msg: Message) -> LinkView:
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info else ""
    return LinkView(
        index=msg["index"],
        name=msg.get_attr("IFLA_IFNAME"),
        kind=kind or "",
        mac=msg.get_attr("IFLA_ADDRESS") or "",
        master=msg.get_attr("IFLA_MASTER") or 0,
        peer_index=msg.get_attr("IFLA_LINK") or 0,
        alias=msg.get_attr("IFLA_IFALIAS") or "",
        up=bool(msg["flags"] & 1),
    )


def find(ipr: IPRoute, name: str) -> LinkView | None:
    try:
        return _view(ipr.get_links(ifname=name)[0])
    except NetlinkError as e:
        if e.code == errno.ENODEV:
            return None
        raise
    except IndexError:
        return None


def all_links(ipr: IPRoute) -> list[LinkView]:
    return [_view(m) for m in ipr.get_links()]


def ensure_bridge(ipr: IPRoute, name: str, mtu: int, gateway: IPv4Interface,
                  networks: tuple[IPv4Network, ...]) -> LinkView:
    """The bridge up with the gateway address; created with `mtu` when absent. Refused
    (ALREADY_EXISTS) while it holds an address of an earlier node subnet."""
    created = True
    with kernel(f"create bridge {name}"):
        try:
            ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
            created = False
    bridge = find(ipr, name)
    if bridge is None or bridge.kind != "bridge":
        raise CNIError(ALREADY_EXISTS, f"{name!r} already exists but is not a bridge")
    if created:
        # Pin the MAC: otherwise the bridge takes the lowest MAC of its ports.
        with kernel(f"set the MAC of bridge {name}"):
            ipr.link("set", index=bridge.index, address=bridge.mac)
    stale = stale_bridge_addresses(addresses(ipr, bridge.index), gateway, networks)
    if stale:
        raise CNIError(ALREADY_EXISTS, f"bridge {name} already has an address different "
                       f"from {gateway}", f"found {', '.join(map(str, stale))}; "
                       "the node subnet changed: delete the bridge or its old address")
    with kernel(f"add {gateway} to bridge {name}"):
        try:
            ipr.addr("add", index=bridge.index, address=str(gateway.ip),
                     prefixlen=gateway.network.prefixlen)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
        if not bridge.up:
            ipr.link("set", index=bridge.index, state="up")
    return bridge


def enable_forwarding() -> None:
    with open(FORWARDING, "r+") as f:
        if f.read().strip() != "1":
            f.seek(0)
            f.write("1")


def addresses(ipr: IPRoute, index: int) -> list[IPv4Interface]:
    return [IPv4Interface(f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}")
            for m in ipr.get_addr(family=2, index=index)]


def routes(ipr: IPRoute, index: int) -> list[Route]:
    out = []
    for m in ipr.get_routes(family=2, oif=index, table=254):
        dst = m.get_attr("RTA_DST")
        gw = m.get_attr("RTA_GATEWAY")
        out.append(Route(IPv4Network(f"{dst or '0.0.0.0'}/{m['dst_len']}"),
                         IPv4Interface(gw).ip if gw else None))
    return out


def add_veth(host: IPRoute, pod: IPRoute, pod_fd: int, *, host_name: str, pod_name: str,
             mtu: int, pod_mac: str | None) -> tuple[LinkView, LinkView]:
    """The veth pair, its pod end made directly in the pod's namespace (with `pod_mac`
    when one is given)."""
    if find(pod, pod_name) is not None:
        raise CNIError(ALREADY_EXISTS, f"container interface {pod_name} already exists")
    if find(host, host_name) is not None:
        raise CNIError(ALREADY_EXISTS, f"host veth {host_name} already exists",
                       "the attachment was added before; DEL it first")
    peer: dict[str, object] = {"ifname": pod_name, "net_ns_fd": pod_fd, "mtu": mtu}
    if pod_mac:
        peer["address"] = pod_mac
    with kernel(f"create veth {host_name} with peer {pod_name} in the pod"):
        host.link("add", ifname=host_name, kind="veth", mtu=mtu, peer=peer)
    host_link, pod_link = find(host, host_name), find(pod, pod_name)
    assert host_link is not None and pod_link is not None
    return host_link, pod_link


def announce(host: IPRoute, host_end: LinkView, pod_fd: int, pod_end: LinkView,
             ip: IPv4Address) -> None:
    """Broadcast a gratuitous ARP from the pod's interface, so that the other pods holding
    a recycled IP's old MAC take the new one. Sent once the host end forwards: the kernel's
    own announcement (arp_notify) leaves as the pod's link comes up, when the bridge port
    may not forward yet, and is lost then (plugins#463). Best effort: a pod whose
    announcement is lost is still reached once its neighbours' entries time out."""
    _wait_forwarding(host, host_end.index)
    try:
        with inside(pod_fd, "the pod's netns"):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)   # 0: send only
        with sock:
            sock.bind((pod_end.name, 0))
            sock.send(arp.announcement(pod_end.mac, ip))
    except OSError:
        pass


def _wait_forwarding(ipr: IPRoute, index: int) -> None:
    """Wait (at most FORWARDING_WAIT s) until the bridge port `index` forwards."""
    deadline, pause = time.monotonic() + FORWARDING_WAIT, 0.001
    while True:
        with kernel("read the state of the pod's bridge port"):
            info = ipr.get_links(index)[0].get_attr("IFLA_LINKINFO")
        port = info.get_attr("IFLA_INFO_SLAVE_DATA") if info else None
        if port is not None and port.get_attr("IFLA_BRPORT_STATE") == BR_STATE_FORWARDING \
                or time.monotonic() >= deadline:
            return
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def forget_neighbour(ipr: IPRoute, bridge: LinkView, ip: IPv4Address) -> None:
    """Drop the node's neighbour entry for `ip` on the bridge: after a recycled IP it still
    holds the old pod's MAC, and the node would send to it until the entry times out."""
    try:
        ipr.neigh("del", dst=str(ip), ifindex=bridge.index)
    except NetlinkError as e:
        if e.code not in (errno.ENOENT, errno.ESRCH, errno.EINVAL):
            raise CNIError(KERNEL_FAILURE, f"cannot remove the neighbour entry of {ip} on "
                           f"{bridge.name}", os.strerror(e.code)) from None


def attach_host_end(ipr: IPRoute, link: LinkView, bridge: LinkView, *, hairpin: bool,
                    alias: str) -> None:
    with kernel(f"attach {link.name} to bridge {bridge.name}"):
        ipr.link("set", index=link.index, master=bridge.index, ifalias=alias, state="up")
        if hairpin:
            ipr.brport("set", index=link.index, mode=1)


def configure_pod(ipr: IPRoute, link: LinkView, address: IPv4Interface,
                  routes_: tuple[Route, ...]) -> None:
    with kernel(f"configure {link.name} in the pod"):
        lo = find(ipr, "lo")
        if lo is not None and not lo.up:
            ipr.link("set", index=lo.index, state="up")
        ipr.addr("add", index=link.index, address=str(address.ip),
                 prefixlen=address.network.prefixlen)
        ipr.link("set", index=link.index, state="up")
    for route in routes_:
        with kernel(f"add route {route.dst} via {route.gw} dev {link.name} in the pod"):
            ipr.route("add", dst=str(route.dst), gateway=str(route.gw) if route.gw else None,
                      oif=link.index)


def delete(ipr: IPRoute, name: str) -> bool:
    """Delete link `name`; False when it was already gone."""
    with kernel(f"delete {name}"):
        try:
            ipr.link("del", ifname=name)
        except NetlinkError as e:
            if e.code in (errno.ENODEV, errno.ENOENT, errno.EINVAL):
                return False
            raise
    return True


def delete_host_veth(ipr: IPRoute, name: str, alias: str) -> bool:
    """Delete the host veth `name` of the attachment whose alias is `alias`: also when it has
    no alias yet (ADD was killed between creating and attaching it), never when it is
    another attachment's. Deleting it deletes its pod end too, wherever that is."""
    found = find(ipr, name)
    if found is None or found.kind != "veth" or found.alias not in ("", alias):
        return False
    return delete(ipr, name)
