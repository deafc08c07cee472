"""flanneld.core.routes: the data plane's immutable route snapshot."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flanneld.core.lease import Lease
from flanneld.core.lease_watch import Delete, LeaseTable, Put
from flanneld.core.routes import Routes

from .strategies import addresses, leases_in, subnets

OWN = IPv4Network("10.244.1.0/24")
A, B = IPv4Address("192.168.1.1"), IPv4Address("192.168.1.2")
PORT = 8285


def lease(subnet: str, ip: IPv4Address = A) -> Lease:
    return Lease(IPv4Network(subnet), ip, 100.0)


def ip(text: str) -> int:
    return int(IPv4Address(text))


def test_lookup_gives_the_peer_sockaddr() -> None:
    r = Routes.build([lease("10.244.2.0/24", A), lease("10.244.3.0/24", B)], PORT)
    assert r.lookup(ip("10.244.2.0")) == ("192.168.1.1", PORT)
    assert r.lookup(ip("10.244.2.255")) == ("192.168.1.1", PORT)
    assert r.lookup(ip("10.244.3.77")) == ("192.168.1.2", PORT)
    for miss in ("10.244.4.1", "10.244.1.1", "0.0.0.0", "255.255.255.255"):
        assert r.lookup(ip(miss)) is None
    assert r.peers == frozenset({"192.168.1.1", "192.168.1.2"})
    assert len(r) == 2


def test_subnets_of_one_peer_share_one_sockaddr() -> None:
    r = Routes.build([lease("10.244.2.0/24", A), lease("10.244.5.0/24", A)], PORT)
    assert r.lookup(ip("10.244.2.1")) is r.lookup(ip("10.244.5.1"))   # no per-packet tuples


def test_lookup_prefers_the_longest_prefix() -> None:
    r = Routes.build([lease("10.244.0.0/16", A), lease("10.244.2.0/24", B),
                      lease("10.244.2.0/26", A)], PORT)
    assert r.lookup(ip("10.244.2.1")) == (str(A), PORT)
    assert r.lookup(ip("10.244.2.100")) == (str(B), PORT)
    assert r.lookup(ip("10.244.9.1")) == (str(A), PORT)
    assert r.lookup(ip("10.245.0.1")) is None


def test_a_repeated_subnet_keeps_the_last_lease_and_drops_a_shadowed_peer() -> None:
    r = Routes.build([lease("10.244.2.0/24", A), lease("10.244.2.0/24", B)], PORT)
    assert r.lookup(ip("10.244.2.1")) == (str(B), PORT)
    assert r.peers == frozenset({str(B)}) and len(r) == 1


def test_a_zero_length_prefix_routes_everything() -> None:
    r = Routes.build([lease("0.0.0.0/0", A), lease("10.244.2.0/24", B)], PORT)
    assert r.lookup(0) == (str(A), PORT) and r.lookup(2**32 - 1) == (str(A), PORT)
    assert r.lookup(ip("10.244.2.3")) == (str(B), PORT)


def test_empty() -> None:
    for r in (Routes.EMPTY, Routes.build([], PORT)):
        assert r.lookup(ip("10.244.2.1")) is None and r.peers == frozenset() and len(r) == 0
    assert "0 subnets" in repr(Routes.EMPTY)


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_a_port_outside_the_udp_range_is_refused(port: int) -> None:
    with pytest.raises(ValueError, match=f"UDP port {port}"):
        Routes.build([], port)


def test_built_from_a_lease_table_after_its_events() -> None:
    t = LeaseTable(OWN)
    t.apply([Put(lease("10.244.0.0/16", A)), Put(lease("10.244.2.0/24", B)),
             Put(lease("10.244.2.0/26", A)), Put(lease("10.244.1.0/24", B))])   # own: ignored
    assert Routes.build(t, PORT).lookup(ip("10.244.1.9")) == (str(A), PORT)     # via the /16
    t.apply([Delete(IPv4Network("10.244.2.0/26")), Delete(IPv4Network("10.244.0.0/16"))])
    r = Routes.build(t, PORT)
    assert r.lookup(ip("10.244.2.1")) == (str(B), PORT)
    assert r.lookup(ip("10.244.9.1")) is None and r.peers == frozenset({str(B)})


# Property: lookup agrees with a brute-force scan of the leases (the last lease of a subnet
# wins, then the longest prefix holding the address).

def brute_force(leases: list[Lease], dst: int, port: int) -> tuple[str, int] | None:
    last = {lz.subnet: lz for lz in leases}
    holding = [lz for lz in last.values() if IPv4Address(dst) in lz.subnet]
    if not holding:
        return None
    best = max(holding, key=lambda lz: lz.subnet.prefixlen)
    return str(best.public_ip), port


def probes(leases: list[Lease]) -> st.SearchStrategy[int]:
    """Addresses at, inside and just outside each subnet, plus anything at all."""
    edges = [int(a) + d for lz in leases
             for a in (lz.subnet.network_address, lz.subnet.broadcast_address)
             for d in (-1, 0, 1)]
    return st.sampled_from([e for e in edges if 0 <= e < 2**32] or [0]) | st.integers(0, 2**32 - 1)


public_ips = st.sampled_from([A, B, IPv4Address("192.168.1.3")])
# Overlapping subnets of a few lengths near each other, as well as anything at all.
near = st.builds(lambda n, p: IPv4Network((0x0AF40000 | n, p), strict=False),
                 st.integers(0, 2**16 - 1), st.integers(14, 28))


@settings(max_examples=300, deadline=None)
@given(st.data(), st.lists(leases_in(near | subnets(), public_ips), max_size=8),
       st.integers(1, 65535))
def test_lookup_agrees_with_a_scan_of_the_leases(data: st.DataObject, leases: list[Lease],
                                                  port: int) -> None:
    r = Routes.build(leases, port)
    for dst in data.draw(st.lists(probes(leases), min_size=1, max_size=20)):
        assert r.lookup(dst) == brute_force(leases, dst, port)
    last = {lz.subnet: lz for lz in leases}
    assert r.peers == {str(lz.public_ip) for lz in last.values()}
    assert len(r) == len(last)


@settings(max_examples=100, deadline=None)
@given(st.lists(leases_in(subnets(16, 30), addresses), max_size=6), addresses)
def test_a_snapshot_does_not_change_with_its_source(leases: list[Lease],
                                                    dst: IPv4Address) -> None:
    source = list(leases)
    r = Routes.build(source, PORT)
    before = r.lookup(int(dst))
    source.clear()
    assert r.lookup(int(dst)) == before
