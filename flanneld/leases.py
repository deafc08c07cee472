"""Acquiring, renewing and recovering this node's lease through a narrow registry.

The choice of subnet is `core.lease_policy`'s; this module adds the round trips through
the registry's `LeaseStore` half: list, choose, delete stale leases of this PublicIP,
create atomically (or renew the one already held), and on a lost race list and choose
again, at most RACE_RETRIES times. Unit tests
drive it with `io.memory.MemoryRegistry`; the daemon with `io.etcd.EtcdRegistry`.
"""

from __future__ import annotations

import logging
from ipaddress import IPv4Address, IPv4Network

from .core.config import NetworkConfig
from .core.errors import LeaseConflict, LeaseLost
from .core.lease import Lease
from .core.lease_policy import RACE_RETRIES, RandomSource, choose_subnet
from .core.registry import LeaseStore

log = logging.getLogger("flanneld.lease")


def acquire(registry: LeaseStore, config: NetworkConfig, public_ip: IPv4Address,
            previous: IPv4Network | None, ttl: int, rng: RandomSource,
            backend_data: str | None = None) -> Lease:
    """This node's lease, as flannel picks it, advertising `backend_data`. SubnetsExhausted
    when the network is full, LeaseConflict after RACE_RETRIES lost races; EtcdUnavailable
    passes through."""
    for _ in range(RACE_RETRIES):
        leases, _revision = registry.list_leases()
        choice = choose_subnet(config, leases, public_ip, previous, rng)
        for stale in choice.stale:
            log.info("deleting lease %s of %s: it does not fit the network config",
                     stale.subnet, public_ip)
            registry.delete_lease(stale.subnet)
        if choice.existing is not None:
            lease = registry.renew_lease(choice.subnet, public_ip,
                                         None if choice.ttl is None else ttl, backend_data)
            log.info("reusing lease %s already held by %s%s", lease.subnet, public_ip,
                     " (a reservation)" if lease.expiration is None else "")
            return lease
        try:
            lease = registry.create_lease(choice.subnet, public_ip, ttl, backend_data)
        except LeaseConflict as e:
            log.info("lost the race for %s (%s); choosing again", choice.subnet, e)
            continue
        log.info("acquired lease %s for %s (%s subnet)", lease.subnet, public_ip, choice.source)
        return lease
    raise LeaseConflict(f"could not lease a subnet for {public_ip}: lost the race to other "
                        f"nodes {RACE_RETRIES} times in a row")


def recover(registry: LeaseStore, lease: Lease, ttl: int | None,
            backend_data: str | None = None) -> Lease:
    """Re-create this node's lease after its key vanished (deleted or expired), advertising
    `backend_data`.

    LeaseLost when another node holds the subnet now; EtcdUnavailable passes through."""
    try:
        fresh = registry.create_lease(lease.subnet, lease.public_ip, ttl, backend_data)
    except LeaseConflict:
        leases, _revision = registry.list_leases()
        holder = next((x for x in leases if x.subnet == lease.subnet), None)
        if holder is not None and holder.public_ip == lease.public_ip:
            return holder  # it is back already (e.g. an operator re-created it)
        raise LeaseLost(f"the lease for {lease.subnet} vanished and "
                        f"{holder.public_ip if holder else 'another node'} holds the subnet "
                        f"now; exiting so that this node can start over with a new subnet "
                        f"(pods on it keep addresses from the old one until rescheduled)"
                        ) from None
    log.warning("the lease for %s had vanished from etcd; re-created it", lease.subnet)
    return fresh
