"""rtnetlink for the plugin: the bridge, the veth pair, addresses and routes.

The functions take a netlink socket (`Netlink`) in the node's namespace or, from
`pod_socket`, in the pod's. Every kernel failure becomes a CNIError naming the object.
"""

from __future__ import annotations

import _socket  # not `socket`: its enums cost a cold call about 2 ms to build
import _thread
import errno
import time
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from ..core import arp, rtnl
from ..core.errors import ALREADY_EXISTS, KERNEL_FAILURE, CNIError
from ..core.plan import stale_bridge_addresses
from ..core.result import Route
from ..core.rtnl import LinkView as LinkView  # re-exported for the commands
from .netlink import Netlink as Netlink
from .netlink import NetlinkError, is_gone
from .netns import inside

FORWARDING = "/proc/sys/net/ipv4/ip_forward"
BR_STATE_FORWARDING = 3
FORWARDING_WAIT = 1.0       # seconds a new bridge port may take to forward
NEW = rtnl.F_CREATE | rtnl.F_EXCL


@contextmanager
def kernel(action: str) -> Iterator[None]:
    try:
        yield
    except NetlinkError as e:
        raise CNIError(KERNEL_FAILURE, f"cannot {action}", e.strerror or str(e)) from None


def pod_socket(fd: int, path: str) -> Netlink:
    with inside(fd, path):
        return Netlink()


def _get(nl: Netlink, *attrs: bytes, index: int = 0) -> LinkView | None:
    try:
        found = nl.request(rtnl.GETLINK, rtnl.ifinfo(*attrs, index=index))
    except NetlinkError as e:
        if is_gone(e):
            return None
        raise
    return rtnl.link(found[0]) if found else None


def _set(nl: Netlink, index: int, *attrs: bytes, up: bool = False) -> None:
    flag = rtnl.IFF_UP if up else 0
    nl.request(rtnl.NEWLINK, rtnl.ifinfo(*attrs, index=index, flags=flag, change=flag))


def find(nl: Netlink, name: str) -> LinkView | None:
    return _get(nl, rtnl.string(rtnl.IFLA_IFNAME, name))


def all_links(nl: Netlink) -> list[LinkView]:
    return [rtnl.link(m) for m in nl.request(rtnl.GETLINK, rtnl.ifinfo(), rtnl.F_DUMP)]


def ensure_bridge(nl: Netlink, name: str, mtu: int, gateway: IPv4Interface,
                  networks: tuple[IPv4Network, ...]) -> LinkView:
    """The bridge up with the gateway address; created with `mtu` when absent. Refused
    (ALREADY_EXISTS) while it holds an address of an earlier node subnet."""
    created = True
    with kernel(f"create bridge {name}"):
        try:
            nl.request(rtnl.NEWLINK, rtnl.bridge(name, mtu), NEW)
        except NetlinkError as e:
            if e.errno != errno.EEXIST:
                raise
            created = False
    bridge = find(nl, name)
    if bridge is None or bridge.kind != "bridge":
        raise CNIError(ALREADY_EXISTS, f"{name!r} already exists but is not a bridge")
    if created:
        # Pin the MAC: otherwise the bridge takes the lowest MAC of its ports.
        with kernel(f"set the MAC of bridge {name}"):
            _set(nl, bridge.index, rtnl.mac(rtnl.IFLA_ADDRESS, bridge.mac))
    stale = stale_bridge_addresses(addresses(nl, bridge.index), gateway, networks)
    if stale:
        raise CNIError(ALREADY_EXISTS, f"bridge {name} already has an address different "
                       f"from {gateway}", f"found {', '.join(map(str, stale))}; "
                       "the node subnet changed: delete the bridge or its old address")
    with kernel(f"add {gateway} to bridge {name}"):
        try:
            nl.request(rtnl.NEWADDR, rtnl.ifaddr(bridge.index, gateway), NEW)
        except NetlinkError as e:
            if e.errno != errno.EEXIST:
                raise
        if not bridge.up:
            _set(nl, bridge.index, up=True)
    return bridge


def enable_forwarding() -> None:
    with open(FORWARDING, "r+") as f:
        if f.read().strip() != "1":
            f.seek(0)
            f.write("1")


def addresses(nl: Netlink, index: int) -> list[IPv4Interface]:
    found = (rtnl.address(m) for m in
             nl.request(rtnl.GETADDR, rtnl.addr_dump(index), rtnl.F_DUMP))
    return [a[1] for a in found if a is not None and a[0] == index]


def routes(nl: Netlink, index: int) -> list[Route]:
    found = (rtnl.route_view(m) for m in
             nl.request(rtnl.GETROUTE, rtnl.route_dump(), rtnl.F_DUMP))
    return [Route(r.dst, r.gateway) for r in found
            if r is not None and r.oif == index and r.table == rtnl.RT_TABLE_MAIN]


def add_veth(host: Netlink, pod: Netlink, pod_fd: int, *, host_name: str, pod_name: str,
             mtu: int, pod_mac: str | None) -> tuple[LinkView, LinkView]:
    """The veth pair, its pod end made directly in the pod's namespace (with `pod_mac`
    when one is given)."""
    if find(pod, pod_name) is not None:
        raise CNIError(ALREADY_EXISTS, f"container interface {pod_name} already exists")
    if find(host, host_name) is not None:
        raise CNIError(ALREADY_EXISTS, f"host veth {host_name} already exists",
                       "the attachment was added before; DEL it first")
    with kernel(f"create veth {host_name} with peer {pod_name} in the pod"):
        host.request(rtnl.NEWLINK, rtnl.veth(host_name, mtu, pod_name, pod_fd, pod_mac), NEW)
    host_link, pod_link = find(host, host_name), find(pod, pod_name)
    assert host_link is not None and pod_link is not None
    return host_link, pod_link


def announce(host: Netlink, host_end: LinkView, pod_fd: int, pod_end: LinkView,
             ip: IPv4Address) -> None:
    """Broadcast a gratuitous ARP from the pod's interface, so that the other pods holding
    a recycled IP's old MAC take the new one. Sent once the host end forwards: the kernel's
    own announcement (arp_notify) leaves as the pod's link comes up, when the bridge port
    may not forward yet, and is lost then (plugins#463). Best effort: a pod whose
    announcement is lost is still reached once its neighbours' entries time out."""
    _wait_forwarding(host, host_end.index)
    try:
        with inside(pod_fd, "the pod's netns"):
            sock = _socket.socket(_socket.AF_PACKET, _socket.SOCK_RAW, 0)   # 0: send only
        _kept.append(sock)
        sock.bind((pod_end.name, 0))
        sock.send(arp.announcement(pod_end.mac, ip))
    except OSError:
        pass


# Closing a packet socket waits for an RCU grace period (about 10 ms measured): the
# announcement's socket is left for the process's exit to close, after the answer went
# out, or for `drop_kept` (see bench/README.md).
_kept: list[_socket.socket] = []


def drop_kept() -> None:
    """Close the announcements' sockets, in a thread that waits for that: for a worker of
    flanneld's that goes on to another call once it has answered."""
    kept = _kept[:]
    _kept.clear()
    if kept:
        try:
            _thread.start_new_thread(_close_all, (kept,))
        except RuntimeError:         # no thread to be had: wait here
            _close_all(kept)


def _close_all(sockets: list[_socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def _wait_forwarding(nl: Netlink, index: int) -> None:
    """Wait (at most FORWARDING_WAIT s) until the bridge port `index` forwards."""
    deadline, pause = time.monotonic() + FORWARDING_WAIT, 0.001
    while True:
        with kernel("read the state of the pod's bridge port"):
            port = _get(nl, index=index)
        if port is not None and port.port_state == BR_STATE_FORWARDING \
                or time.monotonic() >= deadline:
            return
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def forget_neighbour(nl: Netlink, bridge: LinkView, ip: IPv4Address) -> None:
    """Drop the node's neighbour entry for `ip` on the bridge: after a recycled IP it still
    holds the old pod's MAC, and the node would send to it until the entry times out."""
    try:
        nl.request(rtnl.DELNEIGH, rtnl.neighbour(bridge.index, ip))
    except NetlinkError as e:
        if e.errno not in (errno.ENOENT, errno.ESRCH, errno.EINVAL):
            raise CNIError(KERNEL_FAILURE, f"cannot remove the neighbour entry of {ip} on "
                           f"{bridge.name}", e.strerror or "") from None


def attach_host_end(nl: Netlink, link: LinkView, bridge: LinkView, *, hairpin: bool,
                    alias: str) -> None:
    with kernel(f"attach {link.name} to bridge {bridge.name}"):
        _set(nl, link.index, rtnl.u32(rtnl.IFLA_MASTER, bridge.index),
             rtnl.string(rtnl.IFLA_IFALIAS, alias), up=True)
        if hairpin:
            nl.request(rtnl.SETLINK, rtnl.hairpin(link.index))


def configure_pod(nl: Netlink, link: LinkView, address: IPv4Interface,
                  routes_: tuple[Route, ...]) -> None:
    with kernel(f"configure {link.name} in the pod"):
        lo = find(nl, "lo")
        if lo is not None and not lo.up:
            _set(nl, lo.index, up=True)
        nl.request(rtnl.NEWADDR, rtnl.ifaddr(link.index, address), NEW)
        _set(nl, link.index, up=True)
    for route in routes_:
        with kernel(f"add route {route.dst} via {route.gw} dev {link.name} in the pod"):
            nl.request(rtnl.NEWROUTE, rtnl.route(route.dst, route.gw, link.index), NEW)


def delete(nl: Netlink, name: str) -> bool:
    """Delete link `name`; False when it was already gone (or never a valid name)."""
    with kernel(f"delete {name}"):
        try:
            found = find(nl, name)
        except NetlinkError as e:
            if e.errno != errno.EINVAL:
                raise
            return False
    return found is not None and _delete(nl, found)


def _delete(nl: Netlink, found: LinkView) -> bool:
    """Delete `found` (with its veth peer, wherever that is) and return once it is gone from
    the namespace; False when it was gone already. The kernel acknowledges the request only
    after it has also waited for every pending RCU callback (about 15 ms here, of a link
    gone in 1: bench/README.md), which nothing after the deletion needs: the request waits
    for that in a thread of its own, and the process's exit waits for the thread."""
    outcome: list[BaseException | None] = []

    def request(sock: Netlink) -> None:
        try:
            sock.request(rtnl.DELLINK, rtnl.ifinfo(index=found.index))
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            outcome.append(e)
        finally:
            sock.close()

    with kernel(f"delete {found.name}"):
        sock = Netlink()
        try:
            _thread.start_new_thread(request, (sock,))
        except RuntimeError:         # no thread to be had: wait for the kernel here
            request(sock)
        pause = 0.0002
        while not outcome:
            if _get(nl, index=found.index) is None:
                return True
            time.sleep(pause)
            pause = min(pause * 2, 0.005)
        error = outcome[0]
        if isinstance(error, NetlinkError) and (is_gone(error) or error.errno == errno.EINVAL):
            return False
        if error is not None:
            raise error
    return True


def delete_host_veth(nl: Netlink, name: str, alias: str) -> bool:
    """Delete the host veth `name` of the attachment whose alias is `alias`: also when it has
    no alias yet (ADD was killed between creating and attaching it), never when it is
    another attachment's. Deleting it deletes its pod end too, wherever that is."""
    found = find(nl, name)
    if found is None or found.kind != "veth" or found.alias not in ("", alias):
        return False
    return _delete(nl, found)
