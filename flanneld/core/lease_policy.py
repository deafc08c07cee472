"""Which subnet this node leases, and when to renew it (flannel's `tryAcquireLease`).

Order: (1) the lease already held by this PublicIP, if it still fits the config (leases of
this PublicIP that do not fit are to be deleted); (2) the subnet from the previous subnet
file, if it fits and no lease overlaps it; (3) a random one of the first 100 free subnets
from SubnetMin up. The caller creates the key atomically; on LeaseConflict it lists the
leases again and calls `choose_subnet` again, up to RACE_RETRIES times.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Literal, Protocol

from .config import NetworkConfig
from .errors import ConfigError, SubnetsExhausted
from .lease import Lease

LEASE_TTL = 24 * 3600  # seconds; flannel's subnetTTL
RACE_RETRIES = 10  # create attempts before giving up (flannel's raceRetries)
RENEW_RETRY = 60.0  # seconds between failed renewals ("trying again in 1 min")
CANDIDATES = 100  # the random choice is among at most this many free subnets


class RandomSource(Protocol):
    """What `choose_subnet` needs of randomness; `random.Random` fits.

    A Protocol keeps `random` out of the core's imports entirely."""

    def randrange(self, stop: int, /) -> int: ...


@dataclass(frozen=True)
class Choice:
    """The subnet to lease and how.

    `existing` is this node's lease being renewed (None: create a new key). `stale` lists
    this PublicIP's leases that no longer fit the config: delete them first."""

    subnet: IPv4Network
    source: Literal["existing", "previous", "random"]
    existing: Lease | None = None
    stale: tuple[Lease, ...] = ()

    @property
    def ttl(self) -> int | None:
        """Seconds for the etcd lease; None keeps a reservation a reservation (no etcd lease)."""
        if self.existing is not None and self.existing.expiration is None:
            return None
        return LEASE_TTL


def _occupied(leases: list[Lease]) -> list[tuple[int, int]]:
    """The leases' address ranges, sorted and merged into disjoint [first, last] intervals."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted((int(s.network_address), int(s.broadcast_address))
                              for s in (lease.subnet for lease in leases)):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def _overlaps(occupied: list[tuple[int, int]], first: int, last: int) -> tuple[int, int] | None:
    """The interval overlapping [first, last], if any."""
    i = bisect.bisect_right(occupied, (last, 1 << 33)) - 1
    if i >= 0 and occupied[i][1] >= first:
        return occupied[i]
    return None


def free_subnets(config: NetworkConfig, leases: list[Lease],
                 limit: int = CANDIDATES) -> list[IPv4Network]:
    """The first `limit` subnets from SubnetMin to SubnetMax that overlap no lease."""
    occupied = _occupied(leases)
    size = config.subnet_size
    found: list[IPv4Network] = []
    start, end = int(config.subnet_min), int(config.subnet_max)
    while start <= end and len(found) < limit:
        hit = _overlaps(occupied, start, start + size - 1)
        if hit is None:
            found.append(IPv4Network((start, config.subnet_len)))
            start += size
        else:  # jump to the first aligned subnet after the occupied interval
            start = (hit[1] // size + 1) * size
    return found


def choose_subnet(config: NetworkConfig, leases: list[Lease], public_ip: IPv4Address,
                  previous: IPv4Network | None, rng: RandomSource) -> Choice:
    """The subnet this node should lease, given every lease in etcd (reservations included)."""
    mine = [lease for lease in leases if lease.public_ip == public_ip]
    stale = tuple(lease for lease in mine if not config.fits(lease.subnet))
    for lease in mine:
        if config.fits(lease.subnet):
            return Choice(lease.subnet, "existing", lease, stale)
    # Stale leases still count as occupied, as in flannel: they are deleted, not yet gone.
    occupied = _occupied(leases)
    if (previous is not None and config.fits(previous)
            and _overlaps(occupied, int(previous.network_address),
                          int(previous.broadcast_address)) is None):
        return Choice(previous, "previous", None, stale)
    free = free_subnets(config, leases)
    if not free:
        raise SubnetsExhausted(
            f"out of subnets: no free /{config.subnet_len} in {config.network} between "
            f"SubnetMin {config.subnet_min} and SubnetMax {config.subnet_max} "
            f"({len(leases)} leases held)")
    return Choice(free[rng.randrange(len(free))], "random", None, stale)


def renew_at(expiration: float, margin_seconds: float, ttl: float = LEASE_TTL) -> float:
    """When to renew a lease of `ttl` seconds that expires at `expiration` (same clock):
    `margin_seconds` before, or at half its life when the TTL is under twice the margin
    (short TTLs are for tests)."""
    return expiration - min(margin_seconds, ttl / 2)


def renew_retry(ttl: float) -> float:
    """Seconds to wait after a failed renewal: flannel's minute, or a tenth of a short TTL."""
    return min(RENEW_RETRY, max(0.5, ttl / 10))


def renew_margin(minutes: int) -> float:
    """`--subnet-lease-renew-margin` in seconds; ConfigError outside flannel's 1..1439."""
    if not 0 < minutes < 24 * 60:
        raise ConfigError(f"--subnet-lease-renew-margin={minutes} is out of range: it must be "
                          "1..1439 minutes, less than the 24 h lease TTL")
    return minutes * 60.0
