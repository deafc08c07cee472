"""flanneld.core.config: the network config in etcd, with flannel's defaults and checks."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flanneld.core import config
from flanneld.core.config import NetworkConfig
from flanneld.core.errors import ConfigError, FlannelError


def cfg(**raw: object) -> NetworkConfig:
    return config.parse(json.dumps(raw))


def error(text: str) -> str:
    with pytest.raises(ConfigError) as e:
        config.parse(text)
    assert str(e.value).startswith("invalid network config: ")
    return str(e.value)


def test_flannel_docs_example() -> None:
    text = ('{"Network":"10.0.0.0/8","SubnetLen":20,"SubnetMin":"10.10.0.0",'
            '"SubnetMax":"10.99.0.0","Backend":{"Type":"udp","Port":7890}}')
    assert config.parse(text) == NetworkConfig(
        IPv4Network("10.0.0.0/8"), 20, IPv4Address("10.10.0.0"), IPv4Address("10.99.0.0"),
        "udp", 7890)


def test_minimal_config_gets_every_default() -> None:
    c = config.parse(b'{"Network": "10.244.0.0/16"}')
    assert c == NetworkConfig(IPv4Network("10.244.0.0/16"), 24, IPv4Address("10.244.1.0"),
                              IPv4Address("10.244.255.0"), "udp", 8285)
    assert c.subnet_size == 256


@pytest.mark.parametrize(("network", "length", "lo", "hi"), [
    ("10.0.0.0/8", 24, "10.0.1.0", "10.255.255.0"),
    ("10.244.0.0/22", 24, "10.244.1.0", "10.244.3.0"),   # /22 still gets /24s
    ("10.244.0.0/23", 25, "10.244.0.128", "10.244.1.128"),  # smaller: prefix + 2
    ("10.244.0.0/26", 28, "10.244.0.16", "10.244.0.48"),
    ("10.244.0.0/28", 30, "10.244.0.4", "10.244.0.12"),   # the smallest useful network
    ("0.0.0.0/0", 24, "0.0.1.0", "255.255.255.0"),
])
def test_subnet_len_and_range_defaults(network: str, length: int, lo: str, hi: str) -> None:
    c = cfg(Network=network)
    assert (c.subnet_len, str(c.subnet_min), str(c.subnet_max)) == (length, lo, hi)


@pytest.mark.parametrize(("raw", "fragment"), [
    ({"Network": "10.244.0.0/29"}, "minimum useful network prefix is /28"),
    ({"Network": "10.244.0.0/16", "SubnetLen": 31}, "SubnetLen 31 is out of range"),
    ({"Network": "10.244.0.0/16", "SubnetLen": 17}, "at least four subnets (SubnetLen >= 18)"),
    ({"Network": "10.244.0.0/16", "SubnetLen": -1}, "SubnetLen -1 is out of range"),
    ({"Network": "10.244.0.0/16", "SubnetLen": "24"}, 'SubnetLen must be an integer, got "24"'),
    ({"Network": "10.244.0.0/16", "SubnetLen": 24.0}, "SubnetLen must be an integer"),
    ({"Network": "10.244.0.0/16", "SubnetLen": True}, "SubnetLen must be an integer"),
    ({}, "Network is missing"),
    ({"Network": ""}, "Network is missing"),
    ({"Network": None}, "Network is missing"),
    ({"Network": 10}, "Network must be an IPv4 CIDR string"),
    ({"Network": "10.244.0.0"}, "Network '10.244.0.0' is not an IPv4 CIDR"),
    ({"Network": "10.244.0.0/33"}, "is not an IPv4 CIDR"),
    ({"Network": "fc00::/48"}, "is not an IPv4 CIDR"),
    ({"Network": "10.244.0.0/16", "SubnetMin": "10.245.0.0"},
     "SubnetMin 10.245.0.0 is not in the range of Network 10.244.0.0/16"),
    ({"Network": "10.244.0.0/16", "SubnetMax": "10.0.0.0"}, "SubnetMax 10.0.0.0 is not in"),
    ({"Network": "10.244.0.0/16", "SubnetMin": "10.244.1.1"},
     "SubnetMin 10.244.1.1 is not on a SubnetLen (/24) boundary"),
    ({"Network": "10.244.0.0/16", "SubnetMax": "10.244.9.128"}, "SubnetMax 10.244.9.128 is not on"),
    ({"Network": "10.244.0.0/16", "SubnetMin": "10.244.9.0", "SubnetMax": "10.244.8.0"},
     "SubnetMin 10.244.9.0 is above SubnetMax 10.244.8.0"),
    ({"Network": "10.244.0.0/16", "SubnetMin": "x"}, "SubnetMin 'x' is not an IPv4 address"),
    ({"Network": "10.244.0.0/16", "SubnetMin": 5}, "SubnetMin must be an IPv4 address string"),
    ({"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}},
     "backend type 'vxlan' is not supported; only udp is available"),
    ({"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}, "'host-gw' is not supported"),
    ({"Network": "10.244.0.0/16", "Backend": {}}, "Backend.Type is missing; only udp"),
    ({"Network": "10.244.0.0/16", "Backend": "udp"}, 'Backend must be an object, got "udp"'),
    ({"Network": "10.244.0.0/16", "Backend": {"Type": 1}}, "Type must be a string"),
    ({"Network": "10.244.0.0/16", "Backend": {"Type": "udp", "Port": 65536}},
     "Backend.Port 65536 is not a UDP port (1..65535)"),
    ({"Network": "10.244.0.0/16", "Backend": {"Type": "udp", "Port": -5}}, "Port -5 is not"),
    ({"Network": "10.244.0.0/16", "Backend": {"Type": "udp", "Port": "8285"}},
     "Port must be an integer"),
    ({"Network": "10.244.0.0/16", "EnableIPv6": True}, "IPv6 is not supported yet"),
    ({"Network": "10.244.0.0/16", "EnableIPv6": "yes"}, "EnableIPv6 must be true or false"),
    ({"Network": "10.244.0.0/16", "EnableIPv4": False}, "supports IPv4 networks only"),
])
def test_bad_configs_name_the_key(raw: dict, fragment: str) -> None:
    assert fragment in error(json.dumps(raw))


@pytest.mark.parametrize(("text", "fragment"), [
    ("", "not JSON"),
    ("{", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    ("[]", "expected a JSON object, got list"),
    ('"10.244.0.0/16"', "expected a JSON object, got str"),
    ("null", "expected a JSON object, got NoneType"),
])
def test_not_a_json_object(text: str | bytes, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        config.parse(text)


@pytest.mark.parametrize("raw", [
    {"Network": "10.244.0.0/16", "Backend": {"Type": "udp"}},
    {"Network": "10.244.0.0/16", "Backend": {"Type": "UDP", "Port": 0}},
    {"Network": "10.244.0.0/16", "Backend": None, "SubnetLen": None, "SubnetMin": None},
    {"Network": "10.244.0.0/16", "SubnetLen": 0},          # Go's zero value: the default
    {"network": "10.244.0.0/16", "subnetlen": 24, "backend": {"type": "udp", "port": 8285}},
    {"Network": "10.244.7.9/16"},                          # host bits are masked, as ParseCIDR
    {"Network": "10.244.0.0/16", "EnableIPv4": True, "EnableIPv6": False,
     "IPv6Network": "fc00::/48", "EnableNFTables": False, "Unknown": [1, 2]},
])
def test_equivalent_spellings_of_the_default(raw: dict) -> None:
    assert cfg(**raw) == cfg(Network="10.244.0.0/16")


def test_case_insensitive_keys_last_one_wins() -> None:
    text = '{"Network": "10.1.0.0/16", "network": "10.244.0.0/16"}'
    assert config.parse(text).network == IPv4Network("10.244.0.0/16")


def test_fits() -> None:
    c = cfg(Network="10.244.0.0/16", SubnetMin="10.244.10.0", SubnetMax="10.244.20.0")
    assert c.fits(IPv4Network("10.244.10.0/24")) and c.fits(IPv4Network("10.244.20.0/24"))
    assert not c.fits(IPv4Network("10.244.9.0/24"))
    assert not c.fits(IPv4Network("10.244.21.0/24"))
    assert not c.fits(IPv4Network("10.244.10.0/25"))
    assert not c.fits(IPv4Network("10.244.0.0/20"))


def test_errors_are_one_family() -> None:
    assert issubclass(ConfigError, FlannelError)


@given(st.integers(0, 28).flatmap(lambda p: st.tuples(
    st.just(p), st.integers(0, 2**32 - 1), st.integers(max(p + 2, 1), 30) | st.none())))
def test_any_valid_network_gives_a_consistent_config(args: tuple[int, int, int | None]) -> None:
    prefix, addr, length = args
    network = IPv4Network((addr, prefix), strict=False)
    raw: dict = {"Network": str(network)}
    if length is not None:
        raw["SubnetLen"] = length
    c = cfg(**raw)
    assert c.network == network and prefix + 2 <= c.subnet_len <= 30
    assert c.subnet_min in network and c.subnet_max in network
    assert c.subnet_min == network.network_address + c.subnet_size   # the first is skipped
    assert int(c.subnet_max) + c.subnet_size - 1 == int(network.broadcast_address)
    assert int(c.subnet_min) % c.subnet_size == 0 == int(c.subnet_max) % c.subnet_size


def test_differences_name_flannels_keys_once_defaulted() -> None:
    base = cfg(Network="10.244.0.0/16")
    assert config.differences(base, cfg(network="10.244.0.0/16", SubnetLen=24,
                                        Backend={"Type": "udp", "Port": 8285})) == []
    assert config.differences(base, cfg(Network="10.244.0.0/16", SubnetMax="10.244.9.0",
                                        Backend={"Type": "udp", "Port": 7890})) == [
        "SubnetMax 10.244.255.0 != 10.244.9.0", "Backend.Port 8285 != 7890"]


def test_differences_cover_every_field() -> None:
    from dataclasses import fields
    assert [name for _, name in config._KEYS] == [f.name for f in fields(NetworkConfig)]


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), (False, None), ("", None), (True, config.DEFAULT_ENCRYPTION),
    ("aes-256-gcm", "aes-256-gcm"), ("ChaCha20-Poly1305", "chacha20-poly1305"),
])
def test_encryption_names_an_aead_or_is_off(value: object, expected: str | None) -> None:
    c = cfg(Network="10.244.0.0/16", Backend={"Type": "udp", "Encryption": value})
    assert c.encryption == expected
    assert cfg(Network="10.244.0.0/16").encryption is None


@pytest.mark.parametrize(("value", "fragment"), [
    ("des-cbc", "Backend.Encryption 'des-cbc' is not an algorithm pyflannel knows; use one of"),
    ("aes-128-gcm", "not an algorithm pyflannel knows"),
    (3, "Encryption must be true, false or one of chacha20-poly1305, aes-256-gcm, got 3"),
    (["aes-256-gcm"], "Encryption must be true, false or one of"),
])
def test_an_unknown_encryption_is_refused(value: object, fragment: str) -> None:
    assert fragment in error(json.dumps({"Network": "10.244.0.0/16",
                                         "Backend": {"Type": "udp", "Encryption": value}}))


def test_differences_name_the_encryption() -> None:
    clear = cfg(Network="10.244.0.0/16")
    sealed = cfg(Network="10.244.0.0/16", Backend={"Type": "udp", "Encryption": "aes-256-gcm"})
    assert config.differences(clear, sealed) == ["Backend.Encryption None != aes-256-gcm"]
