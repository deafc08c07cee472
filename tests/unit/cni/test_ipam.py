"""cni.core.ipam over the in-memory store: host-local's allocation guarantees."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cni.core import ipam
from cni.core.attachment import Attachment
from cni.core.errors import ALREADY_EXISTS, INVALID_NETWORK_CONFIG, IP_EXHAUSTED, CNIError
from cni.core.requested import Requested

from .fakes import MemoryStore

SUBNET = IPv4Network("10.0.0.0/29")          # hosts .1-.6; .1 is the gateway
GATEWAY = IPv4Address("10.0.0.1")
A, B, C = (Attachment(f"ctr{i}", "eth0") for i in "abc")


def ip(last_octet: int) -> IPv4Address:
    return IPv4Address(f"10.0.0.{last_octet}")


@pytest.mark.parametrize(("gateway", "last", "order"), [
    (GATEWAY, None, [2, 3, 4, 5, 6]),
    (GATEWAY, ip(4), [5, 6, 2, 3, 4]),
    (GATEWAY, ip(6), [2, 3, 4, 5, 6]),           # wraps at the end of the range
    (GATEWAY, ip(1), [2, 3, 4, 5, 6]),           # the gateway is outside the range
    (GATEWAY, IPv4Address("10.9.9.9"), [2, 3, 4, 5, 6]),  # another subnet's last IP
    (ip(3), None, [1, 2, 4, 5, 6]),              # a gateway mid-range is skipped
    (ip(3), ip(2), [4, 5, 6, 1, 2]),
])
def test_candidates_round_robin(gateway: IPv4Address, last: IPv4Address | None,
                                order: list[int]) -> None:
    assert list(ipam.candidates(SUBNET, gateway, last)) == [ip(o) for o in order]


def test_allocate_continues_after_last_reserved_not_lowest_free() -> None:
    store = MemoryStore()
    assert ipam.allocate(store, SUBNET, GATEWAY, A) == ip(2)
    assert ipam.allocate(store, SUBNET, GATEWAY, B) == ip(3)
    ipam.release(store, A)
    assert ipam.allocate(store, SUBNET, GATEWAY, C) == ip(4)
    assert store.last_reserved() == ip(4)


def test_allocate_wraps_and_skips_foreign_reservations() -> None:
    store = MemoryStore({ip(2): None, ip(6): B}, last=ip(5))
    assert ipam.allocate(store, SUBNET, GATEWAY, A) == ip(3)
    assert store.held[ip(3)] == A


def test_filling_a_subnet_never_hands_out_network_gateway_or_broadcast() -> None:
    subnet = IPv4Network("10.0.0.0/28")
    store = MemoryStore()
    got = {ipam.allocate(store, subnet, GATEWAY, Attachment(f"c{i}", "eth0")) for i in range(13)}
    assert got == set(subnet.hosts()) - {GATEWAY}


def test_exhaustion_is_code_100_and_names_the_range() -> None:
    subnet = IPv4Network("10.0.0.0/30")
    store = MemoryStore()
    assert ipam.allocate(store, subnet, GATEWAY, A) == ip(2)
    with pytest.raises(CNIError) as e:
        ipam.allocate(store, subnet, GATEWAY, B)
    assert (e.value.code, e.value.msg, e.value.details) == (
        IP_EXHAUSTED, "no IP addresses available in range 10.0.0.2-10.0.0.2",
        "subnet 10.0.0.0/30 is full")
    assert store.held == {ip(2): A}


def test_duplicate_allocation_for_same_attachment_is_code_101() -> None:
    store = MemoryStore()
    ipam.allocate(store, SUBNET, GATEWAY, A)
    with pytest.raises(CNIError) as e:
        ipam.allocate(store, SUBNET, GATEWAY, A)
    assert e.value.code == ALREADY_EXISTS
    assert e.value.msg == ("10.0.0.2 has been allocated to ctra/eth0, "
                           "duplicate allocation is not allowed")
    assert ipam.allocate(store, SUBNET, GATEWAY, Attachment("ctra", "eth1")) == ip(3)


def test_release_only_touches_the_owners_ips() -> None:
    store = MemoryStore({ip(2): A, ip(3): B, ip(4): A, ip(5): None})
    assert ipam.release(store, A) == [ip(2), ip(4)]
    assert store.held == {ip(3): B, ip(5): None}
    assert ipam.release(store, A) == []
    assert ipam.release(store, Attachment("ctrb", "eth1")) == []
    assert store.held == {ip(3): B, ip(5): None}


@pytest.mark.parametrize(("valid", "expected"), [
    ({A, B, C}, [5]),                         # unreadable owners are always stale
    ({A}, [3, 5]),
    (set(), [2, 3, 5]),                       # an empty list releases everything
    ({Attachment("ctra", "eth1")}, [2, 3, 5]),
])
def test_stale(valid: set[Attachment], expected: list[int]) -> None:
    store = MemoryStore({ip(3): B, ip(2): A, ip(5): None})
    assert ipam.stale(store, valid) == [ip(e) for e in expected]


# --- properties -------------------------------------------------------------------------

OWNERS = [Attachment(f"c{i % 4}", f"eth{i // 4}") for i in range(8)]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple:
    prefix = draw(st.integers(24, 30))
    base = draw(st.integers(0, 2**32 - 1)) >> (32 - prefix) << (32 - prefix)
    subnet = IPv4Network((base, prefix))
    hosts = list(subnet.hosts())
    gateway = draw(st.sampled_from(hosts))
    usable = [h for h in hosts if h != gateway]
    # Foreign reservations fill most of the subnet sometimes, so exhaustion is reachable.
    foreign = draw(st.sets(st.sampled_from(usable), max_size=len(usable)))
    last = draw(st.none() | st.sampled_from(list(subnet)))
    ops = draw(st.lists(st.tuples(st.booleans(), st.sampled_from(OWNERS)), max_size=40))
    return subnet, gateway, foreign, last, ops


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_random_allocate_release_sequences_keep_the_invariants(scenario: tuple) -> None:
    subnet, gateway, foreign, last, ops = scenario
    store = MemoryStore({f: None for f in foreign}, last=last)
    forbidden = {subnet.network_address, gateway, subnet.broadcast_address}
    usable = set(subnet.hosts()) - {gateway}
    for is_allocate, owner in ops:
        before, previous = store.reservations(), store.last_reserved()
        if not is_allocate:
            assert ipam.release(store, owner) == sorted(i for i, o in before.items() if o == owner)
        elif owner in before.values():
            with pytest.raises(CNIError) as e:
                ipam.allocate(store, subnet, gateway, owner)
            assert e.value.code == ALREADY_EXISTS
        elif free := usable - before.keys():
            got = ipam.allocate(store, subnet, gateway, owner)
            # Round-robin: the first free IP after the previous last reserved one, wrapping.
            assert got == min(free, key=lambda i: (previous is not None and i <= previous, i))
            assert store.last_reserved() == got
        else:
            with pytest.raises(CNIError) as e:
                ipam.allocate(store, subnet, gateway, owner)
            assert e.value.code == IP_EXHAUSTED
        held = store.reservations()
        # Nothing held changes hands: each IP keeps its owner until released.
        assert all(held.get(i, o) == o for i, o in before.items())
        assert held.keys() <= set(subnet) - forbidden
        owners = [o for o in held.values() if o is not None]
        assert len(owners) == len(set(owners))      # at most one IP per attachment
        assert {i for i, o in held.items() if o is None} == foreign


# --- a requested IP ---------------------------------------------------------------------

def wanted(last_octet: int) -> Requested:
    return Requested(ip(last_octet), "runtimeConfig.ips")


def test_a_requested_ip_is_given_and_the_round_robin_position_stays() -> None:
    store = MemoryStore(last=ip(3))
    assert ipam.allocate(store, SUBNET, GATEWAY, A, wanted(5)) == ip(5)
    assert store.held == {ip(5): A} and store.last_reserved() == ip(3)
    assert ipam.allocate(store, SUBNET, GATEWAY, B) == ip(4)


@pytest.mark.parametrize(("octet", "words"), [
    (1, "is the gateway"), (0, "network or broadcast"), (7, "network or broadcast"),
    (9, "outside this node's subnet 10.0.0.0/29"),
])
def test_a_requested_ip_that_cannot_be_allocated_is_refused(octet: int, words: str) -> None:
    store = MemoryStore()
    with pytest.raises(CNIError) as e:
        ipam.allocate(store, SUBNET, GATEWAY, A, wanted(octet))
    assert e.value.code == INVALID_NETWORK_CONFIG and words in e.value.details
    assert "runtimeConfig.ips" in e.value.msg and store.held == {}


def test_a_requested_ip_already_held_is_code_101_naming_the_holder() -> None:
    store = MemoryStore({ip(5): B, ip(6): None})
    for octet, holder in ((5, "ctrb/eth0"), (6, "an unreadable reservation")):
        with pytest.raises(CNIError) as e:
            ipam.allocate(store, SUBNET, GATEWAY, A, wanted(octet))
        assert e.value.code == ALREADY_EXISTS and holder in e.value.details
    assert store.held == {ip(5): B, ip(6): None}


def test_a_requested_ip_never_gives_an_attachment_a_second_ip() -> None:
    store = MemoryStore({ip(2): A})
    with pytest.raises(CNIError) as e:
        ipam.allocate(store, SUBNET, GATEWAY, A, wanted(5))
    assert e.value.code == ALREADY_EXISTS and store.held == {ip(2): A}
