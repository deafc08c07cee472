"""rtnetlink messages, built and parsed: the few the plugin sends (links, addresses,
routes, neighbours) and what it reads of the kernel's answers. Pure: bytes in, bytes and
values out; `cni.io.netlink` owns the socket.

A message is an `nlmsghdr` (length, type, flags, sequence, port id) followed by the
request's fixed header (`ifinfomsg`, `ifaddrmsg`, `rtmsg`, `ndmsg`) and attributes, each
a `nlattr` (length, type) with its payload padded to 4 bytes. The layouts are those of
`<linux/netlink.h>` and `<linux/rtnetlink.h>`, host byte order.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

# nlmsghdr types and flags
NLMSG_ERROR, NLMSG_DONE = 2, 3
F_REQUEST, F_MULTI, F_ACK = 0x1, 0x2, 0x4
F_DUMP, F_EXCL, F_CREATE = 0x300, 0x200, 0x400
# rtnetlink message types
NEWLINK, DELLINK, GETLINK, SETLINK = 16, 17, 18, 19
NEWADDR, GETADDR = 20, 22
NEWROUTE, GETROUTE = 24, 26
DELNEIGH = 29
# attributes
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_PROTINFO, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_NET_NS_FD = 12, 18, 20, 28
INFO_KIND, INFO_DATA, INFO_SLAVE_DATA = 1, 2, 5
VETH_INFO_PEER = 1
BRPORT_STATE, BRPORT_MODE = 1, 4
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
NDA_DST = 1
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

AF_UNSPEC, AF_INET, AF_BRIDGE = 0, 2, 7
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST = 254, 3, 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253

_NLMSGHDR = struct.Struct("=IHHII")
_NLATTR = struct.Struct("=HH")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBi")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NDMSG = struct.Struct("=BxxxiHBB")
_ERRNO = struct.Struct("=i")
_U32 = struct.Struct("=I")


class Malformed(ValueError):
    """The kernel's answer does not parse (never expected; it names what was wrong)."""


# --- building --------------------------------------------------------------------------

def _pad(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    size = _NLATTR.size + len(payload)
    return _NLATTR.pack(size, kind) + payload + b"\0" * (_pad(size) - size)


def nested(kind: int, *attrs: bytes, flag: bool = False) -> bytes:
    """Attributes inside one; `flag` sets NLA_F_NESTED (as the bridge's port info needs;
    like iproute2, the rest go without it)."""
    return attr(kind | (NLA_F_NESTED if flag else 0), b"".join(attrs))


def u8(kind: int, value: int) -> bytes:
    return attr(kind, bytes((value,)))


def u32(kind: int, value: int) -> bytes:
    return attr(kind, _U32.pack(value))


def string(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def mac(kind: int, value: str) -> bytes:
    raw = bytes.fromhex(value.replace(":", ""))
    if len(raw) != 6:
        raise ValueError(f"{value!r} is not a 6-byte MAC")
    return attr(kind, raw)


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def ifinfo(*attrs: bytes, index: int = 0, flags: int = 0, change: int = 0,
           family: int = AF_UNSPEC) -> bytes:
    return _IFINFOMSG.pack(family, 0, index, flags, change) + b"".join(attrs)


def ifaddr(index: int, address: IPv4Interface) -> bytes:
    ip = address.ip.packed
    return (_IFADDRMSG.pack(AF_INET, address.network.prefixlen, 0, RT_SCOPE_UNIVERSE, index)
            + attr(IFA_LOCAL, ip) + attr(IFA_ADDRESS, ip))


def addr_dump(index: int) -> bytes:
    return _IFADDRMSG.pack(AF_INET, 0, 0, 0, index)


def route(dst: IPv4Network, gateway: IPv4Address | None, oif: int) -> bytes:
    """A unicast route in the main table, like `ip route add`: scope link without a
    gateway, universe with one."""
    scope = RT_SCOPE_UNIVERSE if gateway is not None else RT_SCOPE_LINK
    head = _RTMSG.pack(AF_INET, dst.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, scope,
                       RTN_UNICAST, 0)
    attrs = [u32(RTA_OIF, oif)]
    if dst.prefixlen:
        attrs.append(attr(RTA_DST, dst.network_address.packed))
    if gateway is not None:
        attrs.append(attr(RTA_GATEWAY, gateway.packed))
    return head + b"".join(attrs)


def route_dump() -> bytes:
    return _RTMSG.pack(AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)


def neighbour(index: int, ip: IPv4Address) -> bytes:
    return _NDMSG.pack(AF_INET, index, 0, 0, 0) + attr(NDA_DST, ip.packed)


def bridge(name: str, mtu: int) -> bytes:
    return ifinfo(string(IFLA_IFNAME, name), u32(IFLA_MTU, mtu),
                  nested(IFLA_LINKINFO, string(INFO_KIND, "bridge")))


def veth(name: str, mtu: int, peer: str, peer_netns_fd: int, peer_mac: str | None) -> bytes:
    """A veth pair `name` here and `peer` in the namespace of `peer_netns_fd`."""
    peer_attrs = [string(IFLA_IFNAME, peer), u32(IFLA_NET_NS_FD, peer_netns_fd),
                  u32(IFLA_MTU, mtu)]
    if peer_mac:
        peer_attrs.append(mac(IFLA_ADDRESS, peer_mac))
    data = nested(INFO_DATA, attr(VETH_INFO_PEER, ifinfo(*peer_attrs)))
    return ifinfo(string(IFLA_IFNAME, name), u32(IFLA_MTU, mtu),
                  nested(IFLA_LINKINFO, string(INFO_KIND, "veth"), data))


def hairpin(index: int) -> bytes:
    """The bridge port `index` in hairpin mode (RTM_SETLINK to the bridge family)."""
    return ifinfo(nested(IFLA_PROTINFO, u8(BRPORT_MODE, 1), flag=True), index=index,
                  family=AF_BRIDGE)


# --- parsing ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    kind: int
    flags: int
    seq: int
    body: bytes


def replies(data: bytes) -> Iterator[Reply]:
    """The messages of one datagram from the kernel."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        size, kind, flags, seq, _ = _NLMSGHDR.unpack_from(data, offset)
        if size < _NLMSGHDR.size or offset + size > len(data):
            raise Malformed(f"netlink message of length {size} at {offset} of {len(data)}")
        yield Reply(kind, flags, seq, data[offset + _NLMSGHDR.size:offset + size])
        offset += _pad(size)


def error_code(body: bytes) -> int:
    """The positive errno of an NLMSG_ERROR body; 0 for an acknowledgement."""
    if len(body) < _ERRNO.size:
        raise Malformed("short netlink error message")
    return -int(_ERRNO.unpack_from(body)[0])


def attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """The attributes from `offset` on, by type (flags stripped; a repeated one: the last)."""
    out: dict[int, bytes] = {}
    while offset + _NLATTR.size <= len(data):
        size, kind = _NLATTR.unpack_from(data, offset)
        if size < _NLATTR.size or offset + size > len(data):
            raise Malformed(f"netlink attribute of length {size} at {offset}")
        out[kind & NLA_TYPE_MASK] = data[offset + _NLATTR.size:offset + size]
        offset += _pad(size)
    return out


def _text(raw: bytes | None) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace") if raw else ""


_UINTS = {1: struct.Struct("=B"), 2: struct.Struct("=H"), 4: _U32, 8: struct.Struct("=Q")}


def _int(raw: bytes | None) -> int:
    """A host-order unsigned attribute; 0 when absent or of no integer size."""
    unpack = _UINTS.get(len(raw)) if raw else None
    return int(unpack.unpack(raw)[0]) if unpack is not None and raw else 0


def _mac(raw: bytes | None) -> str:
    return ":".join(f"{b:02x}" for b in raw) if raw else ""


@dataclass(frozen=True)
class LinkView:
    """What the plugin reads of a link."""

    index: int
    name: str
    kind: str
    mac: str
    master: int
    peer_index: int
    alias: str
    up: bool
    port_state: int | None = None     # a bridge port's STP state (3: forwarding)


def link(body: bytes) -> LinkView:
    if len(body) < _IFINFOMSG.size:
        raise Malformed("short link message")
    _, _, index, flags, _ = _IFINFOMSG.unpack_from(body)
    found = attrs(body, _IFINFOMSG.size)
    info = attrs(found[IFLA_LINKINFO]) if IFLA_LINKINFO in found else {}
    port = attrs(info[INFO_SLAVE_DATA]) if INFO_SLAVE_DATA in info else {}
    return LinkView(
        index=index, name=_text(found.get(IFLA_IFNAME)), kind=_text(info.get(INFO_KIND)),
        mac=_mac(found.get(IFLA_ADDRESS)), master=_int(found.get(IFLA_MASTER)),
        peer_index=_int(found.get(IFLA_LINK)), alias=_text(found.get(IFLA_IFALIAS)),
        up=bool(flags & IFF_UP),
        port_state=_int(port[BRPORT_STATE]) if BRPORT_STATE in port else None)


def address(body: bytes) -> tuple[int, IPv4Interface] | None:
    """(interface index, address) of an IPv4 address message; None for another family."""
    if len(body) < _IFADDRMSG.size:
        raise Malformed("short address message")
    family, prefixlen, _, _, index = _IFADDRMSG.unpack_from(body)
    found = attrs(body, _IFADDRMSG.size)
    raw = found.get(IFA_LOCAL) or found.get(IFA_ADDRESS)
    if family != AF_INET or raw is None or len(raw) != 4:
        return None
    return index, IPv4Interface((IPv4Address(raw), prefixlen))


@dataclass(frozen=True)
class RouteView:
    dst: IPv4Network
    gateway: IPv4Address | None
    oif: int
    table: int


def route_view(body: bytes) -> RouteView | None:
    """An IPv4 route message; None for another family."""
    if len(body) < _RTMSG.size:
        raise Malformed("short route message")
    family, dst_len, _, _, table, _, _, _, _ = _RTMSG.unpack_from(body)
    if family != AF_INET:
        return None
    found = attrs(body, _RTMSG.size)
    dst, gw = found.get(RTA_DST, b"\0\0\0\0"), found.get(RTA_GATEWAY)
    return RouteView(IPv4Network((IPv4Address(dst[:4]), dst_len), strict=False),
                     IPv4Address(gw[:4]) if gw else None, _int(found.get(RTA_OIF)),
                     _int(found.get(RTA_TABLE)) or table)
