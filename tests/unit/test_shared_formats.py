"""The formats the two programs share without sharing code: what flanneld writes, the
plugin reads back to the same values.

The subnet file is rendered by `flanneld.core.subnet_file.render` and parsed by
`cni.core.subnet_env.parse`; the lab writes it with flanneld's renderer too.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cni.core import subnet_env
from cni.core.subnet_env import SubnetEnv
from flanneld.core import subnet_file
from lab.plugin import subnet_env_text


@st.composite
def networks_and_subnets(draw: st.DrawFn) -> tuple[IPv4Network, IPv4Network]:
    """A cluster network and a node subnet inside it that has room for pods (/30 or larger,
    as the plugin requires)."""
    prefix = draw(st.integers(0, 30))
    base = draw(st.integers(0, 2**32 - 1)) >> (32 - prefix) << (32 - prefix) if prefix else 0
    network = IPv4Network((base, prefix))
    sub_prefix = draw(st.integers(prefix, 30))
    index = draw(st.integers(0, 2 ** (sub_prefix - prefix) - 1))
    subnet = IPv4Network((base + (index << (32 - sub_prefix)), sub_prefix))
    return network, subnet


mtus = st.integers(68, 65535)


@given(pair=networks_and_subnets(), mtu=mtus, ipmasq=st.booleans())
def test_what_flanneld_renders_the_plugin_parses_to_the_same_values(
        pair: tuple[IPv4Network, IPv4Network], mtu: int, ipmasq: bool) -> None:
    network, subnet = pair
    text = subnet_file.render(network, subnet, mtu, ipmasq)
    assert subnet_env.parse(text) == SubnetEnv((network,), subnet, subnet.network_address + 1,
                                               mtu, ipmasq)
    # and flanneld reads its own subnet back from it at the next start
    assert subnet_file.previous_subnet(text) == subnet


@given(pair=networks_and_subnets(), mtu=mtus, ipmasq=st.booleans())
def test_the_lab_writes_the_subnet_file_with_flanneld_s_renderer(
        pair: tuple[IPv4Network, IPv4Network], mtu: int, ipmasq: bool) -> None:
    network, subnet = pair
    first = f"{subnet.network_address + 1}/{subnet.prefixlen}"
    assert subnet_env_text(str(network), first, mtu, ipmasq) \
        == subnet_file.render(network, subnet, mtu, ipmasq)


def test_the_lab_s_default_subnet_file_is_flannel_s_example() -> None:
    assert subnet_env_text() == ("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n"
                                 "FLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n")
    env = subnet_env.parse(subnet_env_text(ipmasq=True))
    assert (env.gateway, env.ipmasq) == (IPv4Address("10.244.1.1"), True)


def test_the_lab_refuses_a_subnet_line_flanneld_would_not_write() -> None:
    with pytest.raises(ValueError, match="first address of 10.244.1.0/24"):
        subnet_env_text(subnet="10.244.1.0/24")
