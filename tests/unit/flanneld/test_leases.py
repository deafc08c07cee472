"""flanneld.leases: acquisition, races and recovery against an in-memory registry."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network

import pytest

from flanneld import leases
from flanneld.core import config
from flanneld.core.errors import EtcdUnavailable, LeaseConflict, LeaseLost, SubnetsExhausted
from flanneld.core.lease import Lease
from flanneld.core.lease_policy import LEASE_TTL, RACE_RETRIES

from .fakes import MemoryRegistry

CFG = config.parse('{"Network": "10.244.0.0/16"}')
SMALL = config.parse('{"Network": "10.9.0.0/22", "SubnetLen": 24}')  # 10.9.1..3.0/24
ME, PEER = IPv4Address("192.168.1.10"), IPv4Address("192.168.1.20")


def net(text: str) -> IPv4Network:
    return IPv4Network(text)


def acquire(reg: MemoryRegistry, previous: str | None = None, cfg=CFG, ttl=LEASE_TTL,
            seed: int = 1) -> Lease:
    return leases.acquire(reg, cfg, ME, net(previous) if previous else None, ttl,
                          random.Random(seed))


def test_a_new_node_creates_a_random_free_subnet_with_the_ttl() -> None:
    reg = MemoryRegistry()
    got = acquire(reg)
    assert CFG.fits(got.subnet) and got.public_ip == ME
    assert got.expiration == reg.now + LEASE_TTL and reg.leases[got.subnet] == got
    assert reg.calls == ["list", "create"]


def test_the_lease_of_the_same_public_ip_is_renewed_not_recreated() -> None:
    reg = MemoryRegistry()
    reg.leases[net("10.244.7.0/24")] = Lease(net("10.244.7.0/24"), ME, 5000.0)
    got = acquire(reg, previous="10.244.9.0/24", ttl=30)
    assert got.subnet == net("10.244.7.0/24") and got.expiration == reg.now + 30
    assert reg.calls == ["list", "renew"]


def test_a_reservation_stays_a_reservation() -> None:
    reg = MemoryRegistry()
    reg.leases[net("10.244.7.0/24")] = Lease(net("10.244.7.0/24"), ME, None)
    assert acquire(reg).expiration is None


def test_the_previous_subnet_is_reused_when_free_and_skipped_when_taken() -> None:
    reg = MemoryRegistry()
    assert acquire(reg, previous="10.244.42.0/24").subnet == net("10.244.42.0/24")
    reg2 = MemoryRegistry()
    reg2.leases[net("10.244.42.0/24")] = Lease(net("10.244.42.0/24"), PEER, 5000.0)
    assert acquire(reg2, previous="10.244.42.0/24").subnet != net("10.244.42.0/24")


def test_stale_leases_of_this_node_are_deleted_first() -> None:
    reg = MemoryRegistry()
    reg.leases[net("10.200.1.0/24")] = Lease(net("10.200.1.0/24"), ME, 5000.0)  # old network
    got = acquire(reg)
    assert net("10.200.1.0/24") not in reg.leases and CFG.fits(got.subnet)
    assert reg.calls == ["list", "delete", "create"]


def test_a_lost_race_lists_and_chooses_again() -> None:
    reg = MemoryRegistry()
    raced: list[IPv4Network] = []

    def racer(subnet: IPv4Network) -> None:
        if not raced:  # another node takes exactly the subnet we chose, once
            raced.append(subnet)
            reg.leases[subnet] = Lease(subnet, PEER, 5000.0)

    reg.before_create = racer
    got = acquire(reg, previous="10.244.42.0/24")
    assert raced == [net("10.244.42.0/24")] and got.subnet != raced[0]
    assert reg.leases[raced[0]].public_ip == PEER
    assert reg.calls == ["list", "create", "list", "create"]


def test_losing_every_race_gives_up_with_a_clear_error() -> None:
    reg = MemoryRegistry()
    reg.before_create = lambda subnet: reg.leases.setdefault(subnet, Lease(subnet, PEER, 5000.0))
    with pytest.raises(LeaseConflict, match=f"lost the race to other nodes {RACE_RETRIES} times"):
        acquire(reg, cfg=CFG)
    assert reg.calls.count("create") == RACE_RETRIES


def test_a_full_network_is_a_clear_error() -> None:
    reg = MemoryRegistry()
    for i in (1, 2, 3):
        reg.leases[net(f"10.9.{i}.0/24")] = Lease(net(f"10.9.{i}.0/24"), PEER, 5000.0)
    with pytest.raises(SubnetsExhausted, match="out of subnets"):
        acquire(reg, cfg=SMALL)


def test_etcd_outages_pass_through_for_the_caller_to_retry() -> None:
    reg = MemoryRegistry()
    reg.down = True
    with pytest.raises(EtcdUnavailable):
        acquire(reg)


def test_recover_recreates_the_same_subnet_when_free() -> None:
    reg = MemoryRegistry()
    old = Lease(net("10.244.5.0/24"), ME, 5000.0)
    got = leases.recover(reg, old, 30)
    assert got.subnet == old.subnet and reg.leases[old.subnet].public_ip == ME


def test_recover_accepts_a_key_that_is_already_back_with_our_ip() -> None:
    reg = MemoryRegistry()
    old = Lease(net("10.244.5.0/24"), ME, 5000.0)
    reg.leases[old.subnet] = Lease(old.subnet, ME, None)
    assert leases.recover(reg, old, 30).public_ip == ME


def test_recover_fails_when_another_node_holds_the_subnet() -> None:
    reg = MemoryRegistry()
    old = Lease(net("10.244.5.0/24"), ME, 5000.0)
    reg.leases[old.subnet] = Lease(old.subnet, PEER, 5000.0)
    with pytest.raises(LeaseLost, match="192.168.1.20 holds the subnet now"):
        leases.recover(reg, old, 30)
