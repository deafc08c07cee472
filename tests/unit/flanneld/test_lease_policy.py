"""flanneld.core.lease_policy: which subnet to lease, flannel's order, and renewal timing."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flanneld.core import config
from flanneld.core.config import NetworkConfig
from flanneld.core.errors import ConfigError, SubnetsExhausted
from flanneld.core.lease import Lease
from flanneld.core.lease_policy import (
    CANDIDATES,
    LEASE_TTL,
    Choice,
    choose_subnet,
    free_subnets,
    renew_at,
    renew_margin,
    renew_retry,
)

from .strategies import leases_in, subnets

CFG = config.parse('{"Network": "10.244.0.0/16"}')
ME, PEER = IPv4Address("192.168.1.10"), IPv4Address("192.168.1.20")


def net(text: str) -> IPv4Network:
    return IPv4Network(text)


def lease(subnet: str, ip: IPv4Address = PEER, exp: float | None = 1000.0) -> Lease:
    return Lease(net(subnet), ip, exp)


def choose(leases: list[Lease], previous: str | None = None, cfg: NetworkConfig = CFG,
           seed: int = 0) -> Choice:
    return choose_subnet(cfg, leases, ME, net(previous) if previous else None, random.Random(seed))


def test_reuses_the_lease_of_the_same_public_ip() -> None:
    mine = lease("10.244.7.0/24", ME)
    c = choose([lease("10.244.1.0/24"), mine], previous="10.244.9.0/24")
    assert c == Choice(net("10.244.7.0/24"), "existing", mine, ())
    assert c.ttl == LEASE_TTL


def test_a_reservation_stays_a_reservation() -> None:
    mine = lease("10.244.7.0/24", ME, exp=None)
    assert choose([mine]).ttl is None
    assert choose([mine]).existing == mine


@pytest.mark.parametrize("subnet", ["10.244.0.0/24",      # below SubnetMin
                                    "10.244.7.0/25",      # wrong length
                                    "10.245.7.0/24",      # outside Network
                                    "10.244.0.0/20"])     # old, wider SubnetLen
def test_a_same_ip_lease_that_does_not_fit_is_deleted(subnet: str) -> None:
    stale = lease(subnet, ME)
    c = choose([stale], previous="10.244.19.0/24")
    assert c == Choice(net("10.244.19.0/24"), "previous", None, (stale,))
    assert c.ttl == LEASE_TTL


def test_a_stale_lease_still_occupies_its_range_until_gone() -> None:
    stale = lease("10.244.0.0/20", ME)        # as in flannel: deleted, not yet gone
    c = choose([stale], previous="10.244.9.0/24")
    assert c.source == "random" and c.stale == (stale,)
    assert not c.subnet.overlaps(stale.subnet)


def test_a_fitting_same_ip_lease_wins_over_stale_ones() -> None:
    stale, good = lease("10.244.0.0/24", ME), lease("10.244.5.0/24", ME)
    assert choose([stale, good]) == Choice(net("10.244.5.0/24"), "existing", good, (stale,))


@pytest.mark.parametrize(("previous", "leases", "source"), [
    ("10.244.9.0/24", [], "previous"),
    ("10.244.9.0/24", ["10.244.8.0/24", "10.244.10.0/24"], "previous"),
    ("10.244.9.0/24", ["10.244.9.0/24"], "random"),       # held by another node
    ("10.244.9.0/24", ["10.244.8.0/23"], "random"),       # overlapped by a wider lease
    ("10.244.9.0/24", ["10.244.9.128/25"], "random"),     # overlapped by a narrower lease
    ("10.244.0.0/24", [], "random"),                      # below SubnetMin
    ("10.244.9.0/25", [], "random"),                      # wrong length
    ("10.1.9.0/24", [], "random"),                        # another network
])
def test_previous_subnet(previous: str, leases: list[str], source: str) -> None:
    c = choose([lease(s) for s in leases], previous=previous)
    assert c.source == source and c.existing is None and c.stale == ()
    assert (c.subnet == net(previous)) == (source == "previous")


def test_random_choice_is_among_the_first_100_free_subnets() -> None:
    held = [lease(f"10.244.{i}.0/24") for i in (1, 2, 4)]
    first_free = [net(f"10.244.{i}.0/24") for i in [3, *range(5, 104)]]
    assert free_subnets(CFG, held) == first_free
    picks = {choose(held, seed=s).subnet for s in range(300)}
    assert picks <= set(first_free) and len(picks) > 50


def test_random_choice_is_deterministic_for_a_seed() -> None:
    assert choose([], seed=7) == choose([], seed=7)
    assert len({choose([], seed=s).subnet for s in range(20)}) > 1


def test_exhausted() -> None:
    small = config.parse('{"Network": "10.244.0.0/28"}')    # /30s: .4, .8, .12
    held = [lease("10.244.0.4/30"), lease("10.244.0.8/30"), lease("10.244.0.12/30")]
    with pytest.raises(SubnetsExhausted) as e:
        choose(held, previous="10.244.0.8/30", cfg=small)
    assert str(e.value) == ("out of subnets: no free /30 in 10.244.0.0/28 between SubnetMin "
                            "10.244.0.4 and SubnetMax 10.244.0.12 (3 leases held)")
    assert choose(held[:2], cfg=small).subnet == net("10.244.0.12/30")


def test_scan_skips_a_large_occupied_block_quickly() -> None:
    big = config.parse('{"Network": "10.0.0.0/8"}')
    held = [lease("10.0.0.0/9"), *(lease(f"10.128.{i}.0/24") for i in range(0, 256, 2))]
    free = free_subnets(big, held)
    assert len(free) == CANDIDATES
    assert free[:3] == [net("10.128.1.0/24"), net("10.128.3.0/24"), net("10.128.5.0/24")]


def test_renew_at_and_margin() -> None:
    assert renew_at(1000.0 + LEASE_TTL, 3600.0) == 1000.0 + LEASE_TTL - 3600.0
    assert LEASE_TTL == 86400
    assert renew_margin(60) == 3600.0 and renew_margin(1) == 60.0 and renew_margin(1439) > 0
    for bad in (0, -1, 1440):
        with pytest.raises(ConfigError, match=f"--subnet-lease-renew-margin={bad} is out of"):
            renew_margin(bad)


small_configs = st.sampled_from([
    '{"Network": "10.244.0.0/24", "SubnetLen": 28}',
    '{"Network": "10.244.0.0/28"}',
    '{"Network": "10.244.0.0/22", "SubnetLen": 26, "SubnetMin": "10.244.1.0",'
    ' "SubnetMax": "10.244.2.192"}',
]).map(config.parse)
near = subnets(min_prefix=20, max_prefix=31).map(
    lambda s: IPv4Network((int(s.network_address) & 0xFFF | 0x0AF40000, s.prefixlen),
                          strict=False))   # inside 10.244.0.0/20: plenty of overlaps
ips = st.sampled_from([ME, PEER, IPv4Address("192.168.1.30")])


@settings(max_examples=300, deadline=None)
@given(small_configs, st.lists(leases_in(near, ips), max_size=12),
       st.none() | near, st.integers(0, 2**32))
def test_choice_invariants(cfg: NetworkConfig, leases: list[Lease],
                           previous: IPv4Network | None, seed: int) -> None:
    try:
        c = choose_subnet(cfg, leases, ME, previous, random.Random(seed))
    except SubnetsExhausted:
        every = [IPv4Network((a, cfg.subnet_len)) for a in
                 range(int(cfg.subnet_min), int(cfg.subnet_max) + 1, cfg.subnet_size)]
        assert all(any(s.overlaps(lz.subnet) for lz in leases) for s in every)
        return
    assert c == choose_subnet(cfg, leases, ME, previous, random.Random(seed))
    assert cfg.fits(c.subnet)
    assert cfg.subnet_min <= c.subnet.network_address <= cfg.subnet_max
    assert set(c.stale) == {lz for lz in leases if lz.public_ip == ME and not cfg.fits(lz.subnet)}
    if c.source == "existing":
        assert c.existing in leases and c.existing.public_ip == ME
    else:
        assert not any(lz.public_ip == ME and cfg.fits(lz.subnet) for lz in leases)
        assert not any(c.subnet.overlaps(lz.subnet) for lz in leases)
        assert c.source == "random" or c.subnet == previous


def flannel_scan(cfg: NetworkConfig, leases: list[Lease]) -> list[IPv4Network]:
    """flannel's allocateSubnet loop, literally: every candidate against every lease."""
    bag: list[IPv4Network] = []
    start = int(cfg.subnet_min)
    while start <= int(cfg.subnet_max) and len(bag) < CANDIDATES:
        sn = IPv4Network((start, cfg.subnet_len))
        if not any(sn.overlaps(lz.subnet) for lz in leases):
            bag.append(sn)
        start += cfg.subnet_size
    return bag


@settings(max_examples=200, deadline=None)
@given(small_configs, st.lists(leases_in(near, ips), max_size=12))
def test_free_subnets_equals_flannels_scan(cfg: NetworkConfig, leases: list[Lease]) -> None:
    assert free_subnets(cfg, leases) == flannel_scan(cfg, leases)


def test_short_ttls_renew_at_half_life_and_retry_sooner() -> None:
    assert renew_at(100.0, 3600.0, ttl=20) == 90.0          # margin > ttl/2: half-life
    assert renew_at(100.0, 5.0, ttl=20) == 95.0             # margin smaller: margin
    assert renew_retry(LEASE_TTL) == 60.0 and renew_retry(20) == 2.0 and renew_retry(1) == 0.5
