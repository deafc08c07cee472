"""The udp backend's TUN device: open it, then give it flannel's address, MTU and route.

As flannel's `configureIface`: the device gets `<lease network address>/32` (a /32, so the
kernel makes no broadcast route for it; it is only the source of host-to-pod traffic and
of our ICMP errors), the MTU of the underlay minus the encapsulation, and one route for the
whole flannel network through it. Unlike flannel, IPv6 is turned off on it (see
`_disable_ipv6`). The device is not persistent: it, its address and its route vanish when
the fd from `open_tun` is closed.

Both functions act in the calling thread's network namespace.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network

from pyroute2.iproute.linux import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..core.errors import FlannelError

log = logging.getLogger("flanneld.tun")

TUN_PATH = "/dev/net/tun"
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0
TUN_F_CSUM = 0x01            # the reader completes partial checksums
TUN_F_TSO4 = 0x02            # the reader segments TCP/IPv4 super-packets
OFFLOADS = TUN_F_CSUM | TUN_F_TSO4
IFNAMSIZ = 16
RT_SCOPE_UNIVERSE = 0

_WHY = {
    errno.EBUSY: "it is in use by another process",
    errno.EPERM: "not permitted (needs CAP_NET_ADMIN)",
    errno.EINVAL: "a device of another kind already has that name",
}


def valid_name(raw: bytes) -> bool:
    """The kernel's rule for interface names (dev_valid_name), minus "%d" patterns: the name
    must be exact so that `configure_tun` finds the device."""
    return (0 < len(raw) < IFNAMSIZ and raw not in (b".", b"..")
            and not any(c in b"/:%" or c <= 0x20 or c == 0x7F for c in raw))


def open_tun(name: str, vnet_hdr: bool = False) -> int:
    """A non-blocking fd on the TUN device `name` (IFF_TUN, no packet info header): each read
    is one IP packet, each write injects one. The device is created if absent. With
    `vnet_hdr`, a virtio-net header (`core.vnet`) comes before every packet read and must
    come before every packet written.

    FlannelError naming the device when it cannot be opened (e.g. another process holds it).
    """
    raw = name.encode()
    if not valid_name(raw):
        raise FlannelError(f"cannot open tun device {name!r}: not a valid interface name")
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise FlannelError(f"cannot open tun device {name}: {TUN_PATH}: {e.strerror}") from None
    try:
        flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", raw, flags))
    except OSError as e:
        os.close(fd)
        why = _WHY.get(e.errno or 0, e.strerror or str(e))
        raise FlannelError(f"cannot open tun device {name}: {why}") from None
    return fd


def enable_offloads(fd: int) -> bool:
    """Ask the kernel to hand the reader of `fd` (opened with a virtio-net header) TCP/IPv4
    super-packets and packets with partial checksums (TUN_F_CSUM | TUN_F_TSO4). False when
    it refuses; the device then carries ordinary packets, each with a plain header."""
    try:
        fcntl.ioctl(fd, TUNSETOFFLOAD, OFFLOADS)
    except OSError:
        return False
    return True


def configure_tun(name: str, address: IPv4Address, mtu: int, network: IPv4Network) -> None:
    """Set the MTU of `name`, give it `address`/32, bring it up and route `network` through it
    (scope universe; an existing identical route is kept, as flannel does).

    FlannelError naming the device and the step that failed."""
    step = "find it"
    try:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=name)
            if not found:
                raise FlannelError(f"cannot configure tun device {name}: it does not exist")
            index = found[0]
            step = f"set MTU {mtu}"
            ipr.link("set", index=index, mtu=mtu)
            step = "turn IPv6 off"
            _disable_ipv6(name)
            step = f"add address {address}/32"
            _tolerate_eexist(ipr.addr, "add", index=index, address=str(address), prefixlen=32)
            step = "bring it up"
            ipr.link("set", index=index, state="up")
            step = f"add route {network}"
            _tolerate_eexist(ipr.route, "add", dst=str(network), oif=index,
                             scope=RT_SCOPE_UNIVERSE)
    except NetlinkError as e:
        raise FlannelError(f"cannot configure tun device {name}: {step}: "
                           f"{os.strerror(e.code) if e.code else e}") from None
    except OSError as e:
        raise FlannelError(f"cannot configure tun device {name}: {step}: {e.strerror}") from None


def _disable_ipv6(name: str) -> None:
    """The backend carries IPv4 only. With IPv6 on, the kernel would send router
    solicitations and MLD reports into the TUN as soon as it is up, only to be dropped
    (and counted) there. Nothing to do when the kernel has no IPv6; only logged when
    /proc/sys is read-only, as in a container that is not privileged (those few packets
    are then dropped)."""
    path = f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6"
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno != errno.EROFS:
            raise
        log.info("IPv6 stays on for %s: %s is read-only; the kernel's few IPv6 packets "
                 "into it are dropped", name, path)
        return
    try:
        os.write(fd, b"1")
    finally:
        os.close(fd)


def _tolerate_eexist(call: Callable[..., object], *args: object, **kw: object) -> None:
    try:
        call(*args, **kw)
    except NetlinkError as e:
        if e.code != errno.EEXIST:
            raise
