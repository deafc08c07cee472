"""flanneld.core.lease_watch: other nodes' leases from listings and watch events."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from hypothesis import given, settings
from hypothesis import strategies as st

from flanneld.core.lease import Lease
from flanneld.core.lease_watch import Delete, Event, LeaseTable, Put

OWN = IPv4Network("10.244.1.0/24")
A, B = IPv4Address("192.168.1.1"), IPv4Address("192.168.1.2")


def lease(subnet: str, ip: IPv4Address = A, exp: float | None = 100.0) -> Lease:
    return Lease(IPv4Network(subnet), ip, exp)


def test_reset_emits_removals_then_additions() -> None:
    t = LeaseTable(OWN)
    x, y = lease("10.244.2.0/24"), lease("10.244.3.0/24", B)
    assert t.reset([x, lease("10.244.1.0/24"), y]) == [Event("added", x), Event("added", y)]
    assert len(t) == 2 and t.get(OWN) is None
    y2 = lease("10.244.3.0/24", B, exp=200.0)     # renewed: no event, new expiration
    z = lease("10.244.4.0/24", B)
    assert t.reset([y2, z]) == [Event("removed", x), Event("added", z)]
    assert t.get(y2.subnet) == y2 and list(t) == [y2, z]


def test_reset_reports_a_changed_public_ip_as_added() -> None:
    t = LeaseTable(OWN)
    t.reset([lease("10.244.2.0/24", A)])
    moved = lease("10.244.2.0/24", B)
    assert t.reset([moved]) == [Event("added", moved)]
    assert t.get(moved.subnet) == moved


def test_a_changed_backend_data_is_added_again_and_the_same_is_a_renewal() -> None:
    t = LeaseTable(OWN)
    keyed = Lease(IPv4Network("10.244.2.0/24"), A, 100.0, '{"PublicKey":"x"}')
    assert t.apply([Put(keyed)]) == [Event("added", keyed)]
    assert t.apply([Put(Lease(keyed.subnet, A, 200.0, keyed.backend_data))]) == []
    rotated = Lease(keyed.subnet, A, 200.0, '{"PublicKey":"y"}')
    assert t.apply([Put(rotated)]) == [Event("added", rotated)]
    assert t.reset([keyed]) == [Event("added", keyed)]


def test_apply_puts_and_deletes() -> None:
    t = LeaseTable(OWN)
    x, x_renewed, x_moved = (lease("10.244.2.0/24"), lease("10.244.2.0/24", exp=500.0),
                             lease("10.244.2.0/24", B))
    assert t.apply([Put(x)]) == [Event("added", x)]
    assert t.apply([Put(x_renewed)]) == [] and t.get(x.subnet) == x_renewed
    assert t.apply([Put(x_moved)]) == [Event("added", x_moved)]
    assert t.apply([Delete(x.subnet)]) == [Event("removed", x_moved)]   # the lease as known
    assert t.apply([Delete(x.subnet)]) == [] and len(t) == 0


def test_own_subnet_events_are_dropped() -> None:
    t = LeaseTable(OWN)
    assert t.apply([Put(lease("10.244.1.0/24")), Delete(OWN)]) == []
    assert t.get(OWN) is None and len(t) == 0


def test_without_an_own_subnet_everything_is_kept() -> None:
    t = LeaseTable(None)
    assert t.reset([lease("10.244.1.0/24")]) == [Event("added", lease("10.244.1.0/24"))]


# Property: any sequence of watch events leaves the table as a reset from the final listing
# would, and the events emitted (by apply or reset) are exactly the routing diff.

SUBNETS = [IPv4Network(f"10.244.{i}.0/24") for i in range(1, 6)] + [IPv4Network("10.244.0.0/22")]
IPS = [A, B, IPv4Address("192.168.1.3")]
leases = st.builds(Lease, st.sampled_from(SUBNETS), st.sampled_from(IPS),
                   st.none() | st.floats(0, 1e6, allow_nan=False),
                   st.sampled_from([None, '{"PublicKey":"a"}', '{"PublicKey":"b"}']))
ops = st.one_of(leases.map(Put), st.sampled_from(SUBNETS).map(Delete))


Hop = tuple[IPv4Address, str | None]   # what a peer's subnet routes to: address and keys


def routes(t: LeaseTable) -> dict[IPv4Network, Hop]:
    return {lz.subnet: (lz.public_ip, lz.backend_data) for lz in t}


def fold(before: dict[IPv4Network, Hop], events: list[Event]) -> dict[IPv4Network, Hop]:
    after = dict(before)
    for ev in events:
        if ev.kind == "added":
            after[ev.lease.subnet] = (ev.lease.public_ip, ev.lease.backend_data)
        else:
            assert after.pop(ev.lease.subnet) == (ev.lease.public_ip, ev.lease.backend_data)
    return after


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([OWN, None]), st.lists(leases, max_size=6),
       st.lists(st.lists(ops, max_size=4), max_size=5))
def test_apply_agrees_with_reset_from_the_final_listing(
        own: IPv4Network | None, start: list[Lease], batches: list[list[Put | Delete]]) -> None:
    t = LeaseTable(own)
    t.reset(start)
    etcd = {lz.subnet: lz for lz in start}            # what a listing would return
    for batch in batches:
        before = routes(t)
        events = t.apply(batch)
        for op in batch:
            if isinstance(op, Put):
                etcd[op.lease.subnet] = op.lease
            else:
                etcd.pop(op.subnet, None)
        assert fold(before, events) == routes(t)
    fresh = LeaseTable(own)
    fresh.reset(etcd.values())
    assert {lz.subnet: lz for lz in t} == {lz.subnet: lz for lz in fresh}
    assert own not in routes(t)


@settings(max_examples=200, deadline=None)
@given(st.lists(leases, max_size=6), st.lists(leases, max_size=6))
def test_reset_events_are_the_diff(first: list[Lease], second: list[Lease]) -> None:
    t = LeaseTable(OWN)
    t.reset(first)
    before = routes(t)
    events = t.reset(second)
    assert fold(before, events) == routes(t)
    assert routes(t) == {lz.subnet: (lz.public_ip, lz.backend_data) for lz in second
                         if lz.subnet != OWN}
    assert t.reset(second) == []                      # a repeated listing changes nothing
