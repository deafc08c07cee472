"""rtnetlink messages (cni.core.rtnl): what is built has the kernel's layout, and what the
kernel answers parses back."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cni.core import rtnl

ifnames = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
                  max_size=15)
macs = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b))


def test_an_attribute_is_length_type_payload_padded() -> None:
    assert rtnl.attr(3, b"eth0\0") == struct.pack("=HH", 9, 3) + b"eth0\0" + b"\0" * 3
    assert rtnl.u32(4, 1472) == struct.pack("=HHI", 8, 4, 1472)
    assert rtnl.nested(12, rtnl.u8(4, 1), flag=True)[2:4] == struct.pack("=H", 12 | 0x8000)


def test_a_message_has_its_length_type_flags_and_sequence() -> None:
    msg = rtnl.message(rtnl.NEWLINK, rtnl.F_REQUEST | rtnl.F_ACK, 7, b"x" * 4)
    assert struct.unpack_from("=IHHII", msg) == (20, rtnl.NEWLINK, 5, 7, 0)


@given(st.integers(1, 2**31 - 1), ifnames, macs, st.integers(0, 2**31 - 1),
       st.text(max_size=40).filter(lambda t: "\0" not in t), st.booleans(),
       st.sampled_from(["veth", "bridge", ""]), st.none() | st.integers(0, 4))
def test_a_link_message_parses_back(index, name, mac, master, alias, up, kind,
                                    port_state) -> None:
    info = [rtnl.string(rtnl.INFO_KIND, kind)] if kind else []
    if port_state is not None:
        info.append(rtnl.nested(rtnl.INFO_SLAVE_DATA, rtnl.u8(rtnl.BRPORT_STATE, port_state)))
    body = rtnl.ifinfo(rtnl.string(rtnl.IFLA_IFNAME, name), rtnl.mac(rtnl.IFLA_ADDRESS, mac),
                       rtnl.u32(rtnl.IFLA_MASTER, master), rtnl.string(rtnl.IFLA_IFALIAS,
                                                                       alias),
                       rtnl.nested(rtnl.IFLA_LINKINFO, *info), index=index,
                       flags=rtnl.IFF_UP if up else 0)
    view = rtnl.link(body)
    assert (view.index, view.name, view.mac, view.master, view.alias, view.up, view.kind,
            view.port_state) == (index, name, mac, master, alias, up, kind, port_state)


def test_an_address_and_a_route_parse_back() -> None:
    gateway = IPv4Interface("10.244.1.1/24")
    assert rtnl.address(rtnl.ifaddr(5, gateway)) == (5, gateway)
    route = rtnl.route_view(rtnl.route(IPv4Network("0.0.0.0/0"), IPv4Address("10.244.1.1"), 2))
    assert route == rtnl.RouteView(IPv4Network("0.0.0.0/0"), IPv4Address("10.244.1.1"), 2,
                                   rtnl.RT_TABLE_MAIN)
    direct = rtnl.route_view(rtnl.route(IPv4Network("10.244.0.0/16"), None, 2))
    assert direct is not None and direct.gateway is None
    assert direct.dst == IPv4Network("10.244.0.0/16")


def test_a_veth_request_names_its_peer_in_the_pod_namespace() -> None:
    body = rtnl.veth("veth1234abcd", 1472, "eth0", 9, "02:00:00:00:00:01")
    top = rtnl.attrs(body, 16)
    info = rtnl.attrs(top[rtnl.IFLA_LINKINFO])
    peer = rtnl.attrs(rtnl.attrs(info[rtnl.INFO_DATA])[rtnl.VETH_INFO_PEER], 16)
    assert info[rtnl.INFO_KIND] == b"veth\0"
    assert peer[rtnl.IFLA_IFNAME] == b"eth0\0"
    assert struct.unpack("=I", peer[rtnl.IFLA_NET_NS_FD]) == (9,)
    assert peer[rtnl.IFLA_ADDRESS] == bytes.fromhex("020000000001")


def test_replies_split_a_datagram_and_errors_are_positive_errnos() -> None:
    ack = rtnl.message(rtnl.NLMSG_ERROR, 0, 3, struct.pack("=i", 0) + bytes(16))
    err = rtnl.message(rtnl.NLMSG_ERROR, 0, 4, struct.pack("=i", -17) + bytes(16))
    got = list(rtnl.replies(ack + err))
    assert [(r.kind, r.seq) for r in got] == [(rtnl.NLMSG_ERROR, 3), (rtnl.NLMSG_ERROR, 4)]
    assert [rtnl.error_code(r.body) for r in got] == [0, 17]


@given(st.binary(max_size=64))
def test_any_bytes_parse_or_are_malformed(data: bytes) -> None:
    for parse in (lambda d: list(rtnl.replies(d)), rtnl.attrs, rtnl.link, rtnl.address,
                  rtnl.route_view):
        try:
            parse(data)
        except rtnl.Malformed:
            pass
        except ValueError as e:       # an address family's bytes of the wrong size
            assert not isinstance(e, rtnl.Malformed)


def test_a_mac_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError):
        rtnl.mac(rtnl.IFLA_ADDRESS, "02:00")
