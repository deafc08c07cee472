"""cni.core.requested: the IP and MAC a runtime asks for, from three places."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cni.core.errors import INVALID_ENVIRONMENT, INVALID_NETWORK_CONFIG, CNIError
from cni.core.requested import (
    ARGS_IPS,
    CNI_ARGS_IP,
    CNI_ARGS_MAC,
    RUNTIME_IPS,
    RUNTIME_MAC,
    Requested,
    Wanted,
    from_cni_args,
    merge,
    parse_ip,
    parse_mac,
)


@pytest.mark.parametrize(("text", "ip"), [
    ("10.244.1.5", "10.244.1.5"), ("10.244.1.5/24", "10.244.1.5"), (" 10.0.0.1/8 ", "10.0.0.1"),
])
def test_ips_with_or_without_a_prefix(text: str, ip: str) -> None:
    assert parse_ip(Wanted(text, RUNTIME_IPS)) == IPv4Address(ip)


@pytest.mark.parametrize(("text", "source", "code", "words"), [
    ("10.244.1.256", CNI_ARGS_IP, INVALID_ENVIRONMENT, "not an IP address"),
    ("", RUNTIME_IPS, INVALID_NETWORK_CONFIG, "not an IP address"),
    ("fd00::5/64", ARGS_IPS, INVALID_NETWORK_CONFIG, "IPv6"),
])
def test_bad_ips_name_their_source(text: str, source: str, code: int, words: str) -> None:
    with pytest.raises(CNIError) as e:
        parse_ip(Wanted(text, source))
    assert e.value.code == code and source in e.value.msg and words in e.value.details


@pytest.mark.parametrize(("text", "mac"), [
    ("02:11:22:33:44:55", "02:11:22:33:44:55"), ("02-AA-bb-33-44-55", "02:aa:bb:33:44:55"),
])
def test_macs_are_normalised(text: str, mac: str) -> None:
    assert parse_mac(Wanted(text, RUNTIME_MAC)) == mac


@pytest.mark.parametrize(("text", "words"), [
    ("01:00:5e:00:00:01", "multicast"), ("ff:ff:ff:ff:ff:ff", "multicast"),
    ("00:00:00:00:00:00", "all zeros"), ("02:11:22:33:44", "six hex octets"),
    ("02:11:22:33:44:5g", "six hex octets"), ("021122334455", "six hex octets"),
    ("02:11:22:33:44:555", "six hex octets"),
])
def test_bad_macs(text: str, words: str) -> None:
    with pytest.raises(CNIError) as e:
        parse_mac(Wanted(text, CNI_ARGS_MAC))
    assert e.value.code == INVALID_ENVIRONMENT and words in e.value.details


def test_cni_args_ip_is_a_comma_list_and_mac_optional() -> None:
    ips, mac = from_cni_args({"IP": "10.0.0.5, 10.0.0.5", "K8S_POD_NAME": "x"})
    assert ips == [Wanted("10.0.0.5", CNI_ARGS_IP), Wanted(" 10.0.0.5", CNI_ARGS_IP)]
    assert mac is None
    assert from_cni_args({}) == ([], None)


def test_merge_agrees_on_one_ip_and_the_last_mac_wins() -> None:
    got = merge([Wanted("10.0.0.5", CNI_ARGS_IP), Wanted("10.0.0.5/24", RUNTIME_IPS)],
                [Wanted("02:00:00:00:00:01", CNI_ARGS_MAC), None,
                 Wanted("02:00:00:00:00:02", RUNTIME_MAC)])
    assert got == Requested(IPv4Address("10.0.0.5"), CNI_ARGS_IP, "02:00:00:00:00:02")
    assert merge([], [None]) == Requested()


def test_two_different_ips_are_refused_naming_both() -> None:
    with pytest.raises(CNIError) as e:
        merge([Wanted("10.0.0.5", CNI_ARGS_IP), Wanted("10.0.0.6", RUNTIME_IPS)], [])
    assert e.value.code == INVALID_NETWORK_CONFIG
    assert "10.0.0.5 (CNI_ARGS IP) and 10.0.0.6 (runtimeConfig.ips)" in e.value.details


@given(st.text(max_size=30))
def test_any_text_is_an_ip_a_mac_or_a_spec_error(text: str) -> None:
    for parse, source in ((parse_ip, CNI_ARGS_IP), (parse_mac, RUNTIME_MAC)):
        try:
            parse(Wanted(text, source))
        except CNIError as e:
            assert e.code in (INVALID_ENVIRONMENT, INVALID_NETWORK_CONFIG)
