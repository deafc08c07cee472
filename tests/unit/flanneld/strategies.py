"""Hypothesis strategies shared by the flanneld core tests."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from hypothesis import strategies as st

from flanneld.core.lease import Lease

addresses = st.integers(0, 2**32 - 1).map(IPv4Address)


@st.composite
def subnets(draw: st.DrawFn, min_prefix: int = 0, max_prefix: int = 31) -> IPv4Network:
    prefix = draw(st.integers(min_prefix, max_prefix))
    return IPv4Network((draw(st.integers(0, 2**32 - 1)), prefix), strict=False)


def leases_in(subnet_list: st.SearchStrategy[IPv4Network],
              public_ips: st.SearchStrategy[IPv4Address] = addresses) -> st.SearchStrategy[Lease]:
    expirations = st.none() | st.floats(0, 1e9, allow_nan=False)
    return st.builds(Lease, subnet_list, public_ips, expirations)
