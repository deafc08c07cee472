"""The registry contract (`flanneld.core.registry.Registry`), one suite run against both
implementations: `io.memory.MemoryRegistry`, which unit tests drive the daemon with, and
`io.etcd.EtcdRegistry` against a real etcd (in a worker process inside the etcd's
namespace, etcd_worker.py). Whatever a unit test assumes of the memory registry holds for
etcd too, so the fake cannot drift from the real thing.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

import pytest

from flanneld.core.errors import LeaseConflict
from flanneld.core.lease import Lease
from flanneld.core.lease_policy import LEASE_TTL
from flanneld.core.lease_watch import Delete, Put, WatchBatch, WatchBroken
from flanneld.core.registry import Registry
from flanneld.io.memory import MemoryRegistry

from .etcd_worker import Worker, about

pytestmark = pytest.mark.integration

NET_A, NET_B, NET_C = (IPv4Network(f"10.244.{i}.0/24") for i in (3, 4, 5))
IP_A, IP_B = IPv4Address("192.168.5.2"), IPv4Address("192.168.5.3")
CONFIG = '{"Network": "10.244.0.0/16", "Backend": {"Type": "udp"}}'


class WatchHandle(Protocol):
    def next(self, timeout: float = 5.0) -> WatchBatch | WatchBroken | None: ...
    def changes(self, count: int, timeout: float = 5.0) -> list[Put | Delete]: ...
    def cancel(self) -> None: ...


class LocalWatch:
    """A watch of the memory registry, read like RemoteWatch."""

    def __init__(self, registry: MemoryRegistry, start_revision: int) -> None:
        self.items: queue.Queue[WatchBatch | WatchBroken] = queue.Queue()
        self.cancel = registry.watch_leases(start_revision, self.items.put)

    def next(self, timeout: float = 5.0) -> WatchBatch | WatchBroken | None:
        try:
            return self.items.get(timeout=timeout)
        except queue.Empty:
            return None

    def changes(self, count: int, timeout: float = 5.0) -> list[Put | Delete]:
        found: list[Put | Delete] = []
        while len(found) < count:
            item = self.next(timeout)
            assert isinstance(item, WatchBatch), f"after {found}: {item}"
            found += item.changes
        return found


class Subject:
    """A registry under test, with what the contract needs besides the protocol: watching
    into a readable handle and compacting the history (etcdctl's job for etcd)."""

    def __init__(self, registry: Registry, watch: Callable[[int], WatchHandle],
                 compact: Callable[[int], object]) -> None:
        self.registry, self.watch, self.compact = registry, watch, compact


@pytest.fixture(params=["memory", "etcd"])
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    if request.param == "memory":
        memory = MemoryRegistry()
        yield Subject(memory, lambda start: LocalWatch(memory, start),
                      lambda _revision: memory.compact())
        return
    etcd = request.getfixturevalue("etcd")
    worker: Worker = request.getfixturevalue("open_registry")(etcd)
    yield Subject(worker, worker.watch, etcd.compact)  # type: ignore[arg-type]


def test_the_config_is_absent_then_written_once_and_never_overwritten(subject) -> None:
    registry = subject.registry
    assert registry.get_network_config() is None
    assert registry.create_network_config(CONFIG) == (True, CONFIG)
    assert registry.create_network_config("{}") == (False, CONFIG)
    assert registry.get_network_config() == CONFIG


def test_a_created_lease_is_listed_with_its_expiry(subject) -> None:
    registry = subject.registry
    assert registry.list_leases()[0] == []
    lease = registry.create_lease(NET_A, IP_A, LEASE_TTL)
    assert (lease.subnet, lease.public_ip) == (NET_A, IP_A) and about(lease.expiration,
                                                                      LEASE_TTL)
    leases, revision = registry.list_leases()
    assert [(x.subnet, x.public_ip) for x in leases] == [(NET_A, IP_A)] and revision > 0
    assert about(leases[0].expiration, LEASE_TTL)


def test_creating_an_existing_lease_conflicts_and_changes_nothing(subject) -> None:
    registry = subject.registry
    registry.create_lease(NET_A, IP_A, LEASE_TTL)
    _, revision = registry.list_leases()
    for ttl in (LEASE_TTL, None):
        with pytest.raises(LeaseConflict, match="10.244.3.0"):
            registry.create_lease(NET_A, IP_B, ttl)
    leases, after = registry.list_leases()
    assert [(x.subnet, x.public_ip) for x in leases] == [(NET_A, IP_A)] and after == revision


def test_renewing_gives_a_fresh_expiry_and_creates_a_missing_key(subject) -> None:
    registry = subject.registry
    registry.create_lease(NET_A, IP_A, LEASE_TTL)
    assert about(registry.renew_lease(NET_A, IP_A, 600).expiration, 600)
    assert about(registry.list_leases()[0][0].expiration, 600)
    assert about(registry.renew_lease(NET_B, IP_B, 600).expiration, 600)  # was absent
    assert {x.subnet for x in registry.list_leases()[0]} == {NET_A, NET_B}


def test_reservations_never_expire(subject) -> None:
    registry = subject.registry
    assert registry.create_lease(NET_B, IP_B, None) == Lease(NET_B, IP_B, None)
    assert registry.renew_lease(NET_B, IP_B, None) == Lease(NET_B, IP_B, None)
    assert registry.list_leases()[0] == [Lease(NET_B, IP_B, None)]


def test_what_a_lease_advertises_comes_back_from_listings_and_watches(subject) -> None:
    registry = subject.registry
    _, revision = registry.list_leases()
    watch = subject.watch(revision + 1)
    data = '{"Boot":"b","PublicKey":"k"}'
    assert registry.create_lease(NET_A, IP_A, LEASE_TTL, data).backend_data == data
    assert registry.renew_lease(NET_B, IP_B, None, data) == Lease(NET_B, IP_B, None, data)
    assert [x.backend_data for x in registry.list_leases()[0]] == [data, data]
    created, renewed = watch.changes(2)
    assert isinstance(created, Put) and created.lease.backend_data == data
    assert renewed == Put(Lease(NET_B, IP_B, None, data))
    registry.renew_lease(NET_B, IP_B, None)  # advertising nothing again
    assert watch.changes(1) == [Put(Lease(NET_B, IP_B, None))]


def test_listings_are_in_key_order(subject) -> None:
    registry = subject.registry
    for subnet in (NET_C, NET_A, IPv4Network("10.244.10.0/24"), NET_B):
        registry.create_lease(subnet, IP_A, None)
    assert [str(x.subnet) for x in registry.list_leases()[0]] == [
        "10.244.10.0/24", "10.244.3.0/24", "10.244.4.0/24", "10.244.5.0/24"]


def test_deleting_is_idempotent(subject) -> None:
    registry = subject.registry
    registry.create_lease(NET_A, IP_A, LEASE_TTL)
    registry.delete_lease(NET_A)
    _, revision = registry.list_leases()
    registry.delete_lease(NET_A)
    assert registry.list_leases() == ([], revision)


def test_a_watch_from_the_listing_sees_put_renew_delete_in_order(subject) -> None:
    registry = subject.registry
    registry.create_lease(NET_A, IP_A, LEASE_TTL)  # before the listing: not replayed
    _, revision = registry.list_leases()
    watch = subject.watch(revision + 1)
    registry.create_lease(NET_B, IP_B, LEASE_TTL)
    registry.renew_lease(NET_B, IP_B, LEASE_TTL)
    registry.delete_lease(NET_B)
    registry.create_lease(NET_B, IP_A, None)
    put, renew, delete, reservation = watch.changes(4)
    assert isinstance(put, Put) and isinstance(renew, Put)
    assert put.lease.subnet == renew.lease.subnet == NET_B and put.lease.public_ip == IP_B
    assert about(put.lease.expiration, LEASE_TTL) and about(renew.lease.expiration, LEASE_TTL)
    assert delete == Delete(NET_B) and reservation == Put(Lease(NET_B, IP_A, None))
    watch.cancel()
    registry.create_lease(NET_C, IP_B, None)
    assert watch.next(0.5) is None  # nothing after cancel


def test_a_watch_replays_from_its_start_revision(subject) -> None:
    registry = subject.registry
    _, revision = registry.list_leases()
    registry.create_lease(NET_A, IP_A, None)
    registry.delete_lease(NET_A)
    watch = subject.watch(revision + 1)  # started after the changes it asks for
    assert watch.changes(2) == [Put(Lease(NET_A, IP_A, None)), Delete(NET_A)]


def test_watch_revisions_follow_the_listing(subject) -> None:
    registry = subject.registry
    _, revision = registry.list_leases()
    watch = subject.watch(revision + 1)
    registry.create_lease(NET_A, IP_A, None)
    batch = watch.next()
    assert isinstance(batch, WatchBatch) and batch.revision == registry.list_leases()[1]
    assert batch.revision > revision


def test_an_expired_lease_is_gone_and_its_watch_hears_the_delete(subject) -> None:
    registry = subject.registry
    _, revision = registry.list_leases()
    watch = subject.watch(revision + 1)
    created = time.monotonic()
    registry.create_lease(NET_C, IP_B, 2)
    [put] = watch.changes(1)
    assert isinstance(put, Put) and put.lease.subnet == NET_C
    while registry.list_leases()[0] and time.monotonic() - created < 5:
        time.sleep(0.1)
    assert registry.list_leases()[0] == [] and time.monotonic() - created < 4.5
    assert watch.changes(1, timeout=4) == [Delete(NET_C)]


def test_a_watch_from_a_compacted_revision_breaks(subject) -> None:
    registry = subject.registry
    _, old = registry.list_leases()
    registry.create_lease(NET_A, IP_A, None)
    registry.delete_lease(NET_A)
    _, now = registry.list_leases()
    subject.compact(now)
    broken = subject.watch(old + 1).next()
    assert isinstance(broken, WatchBroken) and broken.compacted, broken
    assert str(now) in broken.reason
    watch = subject.watch(now + 1)  # from the new listing it works
    registry.create_lease(NET_A, IP_A, None)
    assert watch.changes(1) == [Put(Lease(NET_A, IP_A, None))]

