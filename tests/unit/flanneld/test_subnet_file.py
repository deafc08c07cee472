"""flanneld.core.subnet_file: /run/flannel/subnet.env in flannel's format."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flanneld.core.subnet_file import drift, previous_subnet, render

from .strategies import subnets

EXAMPLE = ("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n"
           "FLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n")


def test_render_is_flannels_format() -> None:
    assert render(IPv4Network("10.244.0.0/16"), IPv4Network("10.244.1.0/24"), 1472,
                  True) == EXAMPLE
    assert render(IPv4Network("10.5.0.0/16"), IPv4Network("10.5.72.0/24"), 1450, False) == (
        "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.72.1/24\n"
        "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n")


def test_read_back() -> None:
    assert previous_subnet(EXAMPLE) == IPv4Network("10.244.1.0/24")


@pytest.mark.parametrize("text", [
    "# written by flanneld\n\n" + EXAMPLE.replace("\n", "\r\n"),
    "export FLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_NETWORK='10.244.0.0/16'\n",
    'FLANNEL_SUBNET="10.244.1.1/24"\nFLANNEL_NETWORK = 10.244.0.0/16,10.10.0.0/16 # multi\n',
    "FLANNEL_SUBNET=10.9.9.1/24\n" + EXAMPLE,       # the last value wins
    "FLANNEL_SUBNET=10.244.1.0/24\nFLANNEL_NETWORK=10.244.0.0/16",
])
def test_read_back_tolerates_dotenv_spellings(text: str) -> None:
    assert previous_subnet(text) == IPv4Network("10.244.1.0/24")


@pytest.mark.parametrize("text", [
    "", "garbage", "\x00\xff", "FLANNEL_SUBNET=", "FLANNEL_SUBNET=10.244.1.1",
    "FLANNEL_SUBNET=10.244.1.1/33", "FLANNEL_SUBNET=fc00::1/64", "FLANNEL_SUBNET=x/24",
    "FLANNEL_IPV6_SUBNET=fc00::1/64", "# FLANNEL_SUBNET=10.244.1.1/24",
])
def test_read_back_garbage_is_none(text: str) -> None:
    assert previous_subnet(text) is None


@given(subnets(max_prefix=30), subnets(max_prefix=30), st.integers(68, 65535), st.booleans())
def test_render_reads_back(network: IPv4Network, subnet: IPv4Network, mtu: int,
                           masq: bool) -> None:
    text = render(network, subnet, mtu, masq)
    assert previous_subnet(text) == subnet
    assert text.count("\n") == 4 and text.endswith(f"FLANNEL_IPMASQ={str(masq).lower()}\n")


def test_drift_says_why_the_file_must_be_written_again() -> None:
    assert drift(EXAMPLE, EXAMPLE) is None
    assert drift(None, EXAMPLE) == "was missing"
    assert drift("", EXAMPLE) == "had been changed"
    assert drift(EXAMPLE.replace("1472", "1400"), EXAMPLE) == "had been changed"
