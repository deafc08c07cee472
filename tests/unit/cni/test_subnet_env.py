"""cni.core.subnet_env: flanneld's subnet file."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from cni.core import subnet_env
from cni.core.errors import INVALID_NETWORK_CONFIG, CNIError
from cni.core.subnet_env import SubnetEnv

FLANNEL_EXAMPLE = """FLANNEL_NETWORK=10.1.0.0/16
FLANNEL_SUBNET=10.1.17.1/24
FLANNEL_MTU=1472
FLANNEL_IPMASQ=true
"""
KEYS = {"FLANNEL_NETWORK": "10.1.0.0/16", "FLANNEL_SUBNET": "10.1.17.1/24",
        "FLANNEL_MTU": "1472", "FLANNEL_IPMASQ": "true"}


def text(**changes: str | None) -> str:
    values = {**KEYS, **changes}
    return "".join(f"{k}={v}\n" for k, v in values.items() if v is not None)


def error(data: str) -> str:
    """The details of the error the text gives (always code 7)."""
    with pytest.raises(CNIError) as e:
        subnet_env.parse(data, "/run/flannel/subnet.env")
    assert (e.value.code, e.value.msg) == (INVALID_NETWORK_CONFIG,
                                           "invalid subnet file /run/flannel/subnet.env")
    return e.value.details


def test_flannel_example() -> None:
    env = subnet_env.parse(FLANNEL_EXAMPLE)
    assert env == SubnetEnv((IPv4Network("10.1.0.0/16"),), IPv4Network("10.1.17.0/24"),
                            IPv4Address("10.1.17.1"), 1472, True)
    assert env.networks[0] == IPv4Network("10.1.0.0/16")


@pytest.mark.parametrize("data", [
    "# written by flanneld\n\n" + FLANNEL_EXAMPLE + "\n# end\n",
    FLANNEL_EXAMPLE.replace("\n", "\r\n"),
    "  FLANNEL_NETWORK = 10.1.0.0/16 \n\tFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\n"
    "FLANNEL_IPMASQ=true",
    FLANNEL_EXAMPLE + "FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:1::1/64\n"
    "a line without an equals sign\nOTHER=x\n",
    "FLANNEL_MTU=9000\n" + FLANNEL_EXAMPLE,        # the last value of a key wins
])
def test_comments_blank_lines_whitespace_and_foreign_keys(data: str) -> None:
    assert subnet_env.parse(data) == subnet_env.parse(FLANNEL_EXAMPLE)


@pytest.mark.parametrize(("subnet", "expected_subnet", "gateway"), [
    ("10.1.17.1/24", "10.1.17.0/24", "10.1.17.1"),
    ("10.1.17.0/24", "10.1.17.0/24", "10.1.17.1"),    # gateway is always network + 1
    ("10.1.16.1/20", "10.1.16.0/20", "10.1.16.1"),
    ("10.1.17.5/30", "10.1.17.4/30", "10.1.17.5"),
])
def test_subnet_and_gateway(subnet: str, expected_subnet: str, gateway: str) -> None:
    env = subnet_env.parse(text(FLANNEL_SUBNET=subnet))
    assert (env.subnet, env.gateway) == (IPv4Network(expected_subnet), IPv4Address(gateway))


@pytest.mark.parametrize(("network", "expected"), [
    ("10.1.0.0/16,10.2.0.0/16", ["10.1.0.0/16", "10.2.0.0/16"]),
    ("10.2.0.0/16, 10.1.0.0/16 ,10.2.0.0/16", ["10.2.0.0/16", "10.1.0.0/16"]),
    ("10.1.0.0/16,10.1.0.0/16", ["10.1.0.0/16"]),
    ("10.0.0.0/8,10.1.0.0/16", ["10.0.0.0/8", "10.1.0.0/16"]),
])
def test_network_lists_are_deduplicated_in_order(network: str, expected: list[str]) -> None:
    env = subnet_env.parse(text(FLANNEL_NETWORK=network))
    assert env.networks == tuple(IPv4Network(n) for n in expected)


def test_subnet_may_lie_in_any_listed_network() -> None:
    env = subnet_env.parse(text(FLANNEL_NETWORK="10.2.0.0/16,10.1.0.0/16"))
    assert env.networks[0] == IPv4Network("10.2.0.0/16")


@pytest.mark.parametrize(("ipmasq", "parsed"), [("true", True), ("false", False)])
def test_ipmasq(ipmasq: str, parsed: bool) -> None:
    assert subnet_env.parse(text(FLANNEL_IPMASQ=ipmasq)).ipmasq is parsed


@pytest.mark.parametrize("mtu", ["68", "1500", "65535"])
def test_mtu_bounds(mtu: str) -> None:
    assert subnet_env.parse(text(FLANNEL_MTU=mtu)).mtu == int(mtu)


@pytest.mark.parametrize(("changes", "details"), [
    ({"FLANNEL_NETWORK": None}, "missing FLANNEL_NETWORK"),
    ({"FLANNEL_MTU": ""}, "missing FLANNEL_MTU"),
    ({"FLANNEL_SUBNET": None, "FLANNEL_IPMASQ": None}, "missing FLANNEL_SUBNET, FLANNEL_IPMASQ"),
    ({k: None for k in KEYS}, f"missing {', '.join(KEYS)}"),
])
def test_missing_keys_are_named(changes: dict[str, None], details: str) -> None:
    assert error(text(**changes)) == details


def test_empty_file() -> None:
    assert error("") == f"missing {', '.join(KEYS)}"


@pytest.mark.parametrize("mtu", [
    "abc", "67", "0", "65536", "-1", "1500.0", "1 500", "0x5dc",
    "²", "١٥٠٠", "0" * 4 + "1500",
])
def test_bad_mtu(mtu: str) -> None:
    assert error(text(FLANNEL_MTU=mtu)) == f"FLANNEL_MTU={mtu!r} is not an MTU (68..65535)"


def test_an_mtu_too_long_for_int_is_a_bad_mtu_not_a_crash() -> None:
    assert "is not an MTU" in error(text(FLANNEL_MTU="9" * 4301))


@pytest.mark.parametrize("ipmasq", ["yes", "True", "1", "TRUE", "no"])
def test_bad_ipmasq(ipmasq: str) -> None:
    assert error(text(FLANNEL_IPMASQ=ipmasq)) == \
        f"FLANNEL_IPMASQ={ipmasq!r} is not true or false"


@pytest.mark.parametrize("changes", [
    {"FLANNEL_NETWORK": "10.1.0.1/16"},               # host bits set
    {"FLANNEL_NETWORK": "10.1.0.0/33"},
    {"FLANNEL_NETWORK": "fc00::/48"},
    {"FLANNEL_NETWORK": "10.1.0.0/16,"},
    {"FLANNEL_SUBNET": "10.1.17.256/24"},
    {"FLANNEL_SUBNET": "fc00::1/64"},
    {"FLANNEL_SUBNET": "subnet"},
])
def test_unparseable_addresses(changes: dict[str, str]) -> None:
    assert error(text(**changes))


@pytest.mark.parametrize(("network", "subnet"), [
    ("10.1.0.0/16", "10.2.17.1/24"),
    ("10.1.0.0/16", "10.0.0.1/8"),                    # contains the network, not inside it
    ("10.1.0.0/24,10.3.0.0/16", "10.2.0.1/24"),
])
def test_subnet_outside_network(network: str, subnet: str) -> None:
    details = error(text(FLANNEL_NETWORK=network, FLANNEL_SUBNET=subnet))
    assert details.endswith("is not inside FLANNEL_NETWORK")


@pytest.mark.parametrize("subnet", ["10.1.17.1/31", "10.1.17.1/32"])
def test_subnet_too_small(subnet: str) -> None:
    assert error(text(FLANNEL_SUBNET=subnet)).endswith("is too small to allocate from")
