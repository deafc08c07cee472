"""flanneld.core.lease: lease keys and values in flannel's etcd encoding."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given

from flanneld.core.errors import FlannelError, LeaseFormatError
from flanneld.core.lease import (
    Lease,
    decode_attrs,
    decode_lease,
    encode_attrs,
    parse_subnet_key,
    subnet_key,
)

from .strategies import addresses, subnets


@pytest.mark.parametrize(("subnet", "key"), [
    ("10.244.1.0/24", "10.244.1.0-24"),
    ("10.5.52.0/24", "10.5.52.0-24"),
    ("10.0.16.0/20", "10.0.16.0-20"),
    ("0.0.0.0/0", "0.0.0.0-0"),
])
def test_subnet_key(subnet: str, key: str) -> None:
    assert subnet_key(IPv4Network(subnet)) == key
    assert parse_subnet_key(key) == IPv4Network(subnet)


@pytest.mark.parametrize(("key", "subnet"), [
    ("/coreos.com/network/subnets/10.5.52.0-24", "10.5.52.0/24"),   # a full etcd key
    ("10.244.1.0-24&fc00::-64", "10.244.1.0/24"),                   # dual stack: IPv4 part
    ("/coreos.com/network/subnets/10.244.1.0-24&fc00:0:0:1::-64", "10.244.1.0/24"),
    ("10.244.1.0-024", "10.244.1.0/24"),                            # strconv.ParseUint allows it
    ("x10.244.1.0-24", "10.244.1.0/24"),                            # unanchored at the start
])
def test_parse_subnet_key_accepts_what_flannel_does(key: str, subnet: str) -> None:
    assert parse_subnet_key(key) == IPv4Network(subnet)


@pytest.mark.parametrize("key", [
    "", "config", "10.244.1.0", "10.244.1.0/24", "10.244.1.0-", "10.244.1.0-24x",
    "10.244.1.0-32",               # flannel parses the prefix into 5 bits: 0..31
    "10.244.1.0-99999999999999999999",
    "10.244.1.1-24",               # host bits: refused, it would not round-trip
    "10.244.1.0-24&fc00::",        # a broken IPv6 part makes the key not match
    "10.244.1.0-24&FC00::-64",     # flannel's IPv6 class is lowercase only
    "300.244.1.0-24", "010.244.1.0-24", "10x244y1z0-24",
    "١٠.244.1.0-24",               # non-ASCII digits (Go's \d is ASCII)
])
def test_parse_subnet_key_refuses_garbage(key: str) -> None:
    assert parse_subnet_key(key) is None


@given(subnets())
def test_key_round_trip(subnet: IPv4Network) -> None:
    assert parse_subnet_key(subnet_key(subnet)) == subnet
    assert parse_subnet_key("/coreos.com/network/subnets/" + subnet_key(subnet)) == subnet


def test_encode_attrs_is_flannels_bytes() -> None:
    assert encode_attrs(IPv4Address("10.0.0.1")) == '{"PublicIP":"10.0.0.1","PublicIPv6":null}'
    assert encode_attrs(IPv4Address("10.0.0.1"), '{"PublicKey":"k"}') == (
        '{"PublicIP":"10.0.0.1","PublicIPv6":null,"BackendType":"udp",'
        '"BackendData":{"PublicKey":"k"}}')


def test_backend_data_is_read_back_in_one_form() -> None:
    ip, key = IPv4Address("192.168.64.3"), "/coreos.com/network/subnets/10.244.3.0-24"
    value = encode_attrs(ip, '{"PublicKey": "k",  "Boot": "b"}')
    assert decode_lease(key, value, None).backend_data == '{"Boot":"b","PublicKey":"k"}'
    assert decode_lease(key, encode_attrs(ip), None).backend_data is None
    vxlan = ('{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan",'
             '"BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}')
    assert decode_lease(key, vxlan, None).backend_data == '{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}'


@given(addresses)
def test_attrs_round_trip(ip: IPv4Address) -> None:
    assert decode_attrs(encode_attrs(ip)) == ip
    assert decode_attrs(encode_attrs(ip).encode()) == ip


@pytest.mark.parametrize("value", [
    '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan",'
    '"BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}',   # flannel's vxlan example
    '{"PublicIP":"192.168.64.3"}',                                # old flannel: no PublicIPv6
    '{"PublicIP": "192.168.64.3", "PublicIPv6": "fc00::3", "BackendType": "udp"}',
])
def test_decode_attrs_tolerates_other_keys(value: str) -> None:
    assert decode_attrs(value) == IPv4Address("192.168.64.3")


@pytest.mark.parametrize(("value", "fragment"), [
    ("", "not JSON"), ("{", "not JSON"), (b"\xff", "not JSON"),
    ("[]", "no PublicIP"), ("null", "no PublicIP"), ("{}", "no PublicIP"),
    ('{"PublicIP":null}', "no PublicIP"), ('{"PublicIP":167772161}', "no PublicIP"),
    ('{"PublicIP":"fc00::1"}', "'fc00::1' is not an IPv4 address"),
    ('{"PublicIP":"10.0.0.256"}', "is not an IPv4 address"),
])
def test_decode_attrs_refuses_garbage(value: str | bytes, fragment: str) -> None:
    with pytest.raises(LeaseFormatError, match=fragment):
        decode_attrs(value)


def test_decode_lease() -> None:
    value = encode_attrs(IPv4Address("192.168.1.7"))
    assert decode_lease("/coreos.com/network/subnets/10.244.3.0-24", value, 123.0) == Lease(
        IPv4Network("10.244.3.0/24"), IPv4Address("192.168.1.7"), 123.0)
    with pytest.raises(LeaseFormatError, match="lease key '/x/config' does not name a subnet"):
        decode_lease("/x/config", value, None)
    assert issubclass(LeaseFormatError, FlannelError)


def test_lease_is_frozen_and_defaults_to_a_reservation() -> None:
    lease = Lease(IPv4Network("10.244.3.0/24"), IPv4Address("192.168.1.7"))
    assert lease.expiration is None
    with pytest.raises(AttributeError):
        lease.public_ip = IPv4Address("1.2.3.4")  # type: ignore[misc]
    assert json.loads(encode_attrs(lease.public_ip)) == {"PublicIP": "192.168.1.7",
                                                         "PublicIPv6": None}
