"""The daemon's control loop: config, lease, data plane, subnet file, watch, renewals.

Start-up follows flannel's order: wait for the network config in etcd (or write the
config file's there when etcd has none), pick the interface, acquire the lease, start the
backend, install the iptables rules, write the subnet file, serve /healthz. Then one
thread runs everything that is not per packet, driven by a queue (watch responses from
etcd's thread, the stop request from the signal handler) and by deadlines (renewal, watch
re-establishment, iptables resync, liveness: the data plane runs and the subnet file is
still what was written, else it is written again).
etcd being away never stops forwarding: the last known peers stay in place, the watch is
re-established with backoff, and a compacted watch re-lists.
"""

from __future__ import annotations

import logging
import queue
import random
import time
from collections.abc import Callable
from typing import TypeVar

from . import backends, leases, network_config
from .core import config as netconfig
from .core import metrics
from .core import subnet_file as subnet_text
from .core.errors import EtcdUnavailable, FlannelError, LeaseLost
from .core.iptables import ChainSpec, forward_spec, masq_spec
from .core.lease import Lease
from .core.lease_policy import renew_at, renew_retry
from .core.lease_watch import Delete, LeaseTable, Put
from .core.routes import Routes
from .io import healthz, iface, iptables, subnet_file
from .io.etcd import EtcdRegistry, WatchBatch, WatchBroken
from .options import Options

log = logging.getLogger("flanneld")
T = TypeVar("T")

CONFIG_POLL = 1.0        # seconds between looks for a missing network config (flannel's)
BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0   # watch re-establishment (flannel's 100 ms .. 5 s)
LIVENESS_CHECK = 1.0     # seconds between checks of the data plane and the subnet file
_STOP = object()


class Daemon:
    def __init__(self, opts: Options, registry: EtcdRegistry,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None,
                 config_file: network_config.ConfigFile | None = None) -> None:
        self.opts = opts
        self.registry = registry
        self.config_file = config_file
        self.clock = clock
        self.rng = rng or random.Random()
        self.events: queue.SimpleQueue = queue.SimpleQueue()  # put() is signal-safe
        self.lease: Lease | None = None
        self.backend: backends.UdpBackend | None = None
        self.table = LeaseTable(None)
        self.port = 0
        self.chains: list[ChainSpec] = []
        self.watch_gen = 0
        self.cancel_watch: Callable[[], None] | None = None
        self.backoff = BACKOFF_MIN
        self.deadlines: dict[str, float] = {}
        self.etcd_ok = True
        self.subnet_text = ""                 # what the subnet file holds, as written
        self.subnet_file_error: str | None = None

    # -- entry points -------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the loop to shut down (safe from a signal handler); the lease is kept."""
        self.events.put(_STOP)

    def run(self) -> int:
        """Run until stopped (0) or a fatal error (raised as FlannelError)."""
        config = self._retry("read the network config", self._config)
        if config is None:
            return 0
        underlay = iface.select(list(self.opts.iface))
        public_ip = self.opts.public_ip or underlay.address
        log.info("using interface %s (%s, MTU %d), public IP %s",
                 underlay.name, underlay.address, underlay.mtu, public_ip)
        previous = subnet_text.previous_subnet(subnet_file.read(self.opts.subnet_file))
        lease = self._retry("acquire a lease", lambda: leases.acquire(
            self.registry, config, public_ip, previous, self.opts.subnet_lease_ttl, self.rng))
        if lease is None:
            return 0
        self.lease, self.port = lease, config.backend_port
        self.table = LeaseTable(lease.subnet)
        self.backend = backends.create(config.backend_type, iface_addr=underlay.address,
                                       iface_mtu=underlay.mtu, port=config.backend_port,
                                       network=config.network, subnet=lease.subnet,
                                       offload=self.opts.udp_offload)
        self.backend.start()
        server = None
        try:
            self._install_iptables(config)
            self.subnet_text = subnet_text.render(config.network, lease.subnet,
                                                  self.backend.mtu, self.opts.ip_masq)
            subnet_file.write(self.opts.subnet_file, self.subnet_text)
            log.info("wrote %s: subnet %s, MTU %d", self.opts.subnet_file, lease.subnet,
                     self.backend.mtu)
            if self.opts.healthz_port:
                server = healthz.HealthServer(self.opts.healthz_ip, self.opts.healthz_port,
                                              healthz.Probe(self.health, self.metrics,
                                                            self.peer_list))
                server.start()
            self._schedule_renewal()
            self.deadlines["watch"] = self.clock()
            self.deadlines["liveness"] = self.clock() + LIVENESS_CHECK
            if self.chains:
                self.deadlines["iptables"] = self.clock() + self.opts.iptables_resync
            self._loop()
        finally:
            self._stop_watch()
            self.backend.stop()
            if server is not None:
                server.stop()
            for spec in self.chains:
                try:
                    iptables.remove(spec)
                except Exception as e:  # noqa: BLE001 (shutting down: log and go on)
                    log.warning("could not remove iptables chain %s: %s", spec.chain, e)
        log.info("stopped; the lease for %s stays in etcd for a restart to reuse",
                 lease.subnet)
        return 0

    # -- inspection (called from the /healthz thread) -----------------------------------

    def health(self) -> str | None:
        lease, backend = self.lease, self.backend
        if lease is None:
            return "no lease yet"
        if lease.expiration is not None and self.clock() >= lease.expiration:
            return f"the lease for {lease.subnet} has expired (etcd unreachable?)"
        if backend is None or not backend.alive():
            return "the data plane is not running"
        return backend.tun_problem()

    def metrics(self) -> str:
        lease = self.lease
        backend = self.backend
        gauges = {"peers": len(self.table), "etcd_watching": 1 if self.etcd_ok else 0,
                  "tun_up": 1 if backend is not None and backend.tun_problem() is None else 0}
        if lease is not None and lease.expiration is not None:
            gauges["lease_expires_in_seconds"] = round(lease.expiration - self.clock(), 1)
        if backend is not None:
            gauges.update({f"udp_offload_{name}": int(on) for name, on in backend.offloads.items()})
        return metrics.render(backend.counters() if backend else {}, gauges)

    def peer_list(self) -> list[dict]:
        return [{"subnet": str(x.subnet), "public_ip": str(x.public_ip)} for x in self.table]

    # -- start-up helpers ---------------------------------------------------------------

    def _config(self) -> netconfig.NetworkConfig | None:
        """The network config (written from the config file when etcd has none), waiting
        while it is absent; ConfigError when invalid."""
        key = f"{self.opts.etcd_prefix.rstrip('/')}/config"
        config = network_config.fetch(self.registry, self.config_file, key)
        waited = False
        while config is None:
            if not waited:
                log.warning("no network config at %s yet; waiting for it", key)
                waited = True
            if self._wait(CONFIG_POLL):
                return None
            config = network_config.fetch(self.registry, self.config_file, key)
        log.info("network %s, /%d subnets from %s to %s, backend %s port %d", config.network,
                 config.subnet_len, config.subnet_min, config.subnet_max,
                 config.backend_type, config.backend_port)
        return config

    def _retry(self, what: str, action: Callable[[], T | None]) -> T | None:
        """Run `action`, retrying while etcd is unavailable; None if stopped meanwhile."""
        delay = BACKOFF_MIN
        while True:
            try:
                return action()
            except EtcdUnavailable as e:
                log.warning("cannot %s yet: %s; retrying in %.1f s", what, e, delay)
            if self._wait(delay):
                return None
            delay = min(delay * 2, BACKOFF_MAX)

    def _wait(self, seconds: float) -> bool:
        """Sleep, but wake for a stop request (True)."""
        try:
            return self.events.get(timeout=seconds) is _STOP
        except queue.Empty:
            return False

    def _install_iptables(self, config: netconfig.NetworkConfig) -> None:
        assert self.lease is not None
        if self.opts.ip_masq:
            self.chains.append(masq_spec(config.network, self.lease.subnet,
                                         iptables.supports_random_fully()))
        if self.opts.iptables_forward_rules:
            self.chains.append(forward_spec(config.network))
        for spec in self.chains:
            iptables.ensure(spec)

    # -- the loop -----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            timeout = max(0.0, min(self.deadlines.values()) - self.clock())
            try:
                item = self.events.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                log.info("stop requested")
                return
            if item is not None:
                gen, message = item
                if gen == self.watch_gen:
                    if isinstance(message, WatchBatch):
                        self._on_batch(message)
                    else:
                        self._on_broken(message)
            now = self.clock()
            for name, due in list(self.deadlines.items()):
                if due <= now:
                    getattr(self, f"_due_{name}")()

    def _due_liveness(self) -> None:
        assert self.backend is not None
        if not self.backend.alive():
            raise FlannelError("the udp data plane stopped unexpectedly; exiting")
        self._check_subnet_file()
        self.deadlines["liveness"] = self.clock() + LIVENESS_CHECK

    def _check_subnet_file(self) -> None:
        """Write the subnet file again if it vanished or was changed: the CNI plugin reads
        it for every new pod. An error is logged once until it changes or goes away."""
        path = self.opts.subnet_file
        try:
            why = subnet_text.drift(subnet_file.current(path), self.subnet_text)
            if why is not None:
                subnet_file.write(path, self.subnet_text)
                log.warning("the subnet file %s %s; wrote it again", path, why)
        except OSError as e:
            error = e.strerror or str(e)
            if error != self.subnet_file_error:
                log.error("cannot check or write the subnet file %s: %s; trying again "
                          "every %.0f s", path, error, LIVENESS_CHECK)
                self.subnet_file_error = error
            return
        self.subnet_file_error = None

    def _due_iptables(self) -> None:
        for spec in self.chains:
            try:
                if iptables.ensure(spec):
                    log.warning("iptables chain %s had been changed; restored it", spec.chain)
            except Exception as e:  # noqa: BLE001 (keep running; try again next time)
                log.error("cannot restore iptables chain %s: %s", spec.chain, e)
        self.deadlines["iptables"] = self.clock() + self.opts.iptables_resync

    def _schedule_renewal(self) -> None:
        assert self.lease is not None
        if self.lease.expiration is None:
            self.deadlines.pop("renew", None)  # a reservation never expires
        else:
            self.deadlines["renew"] = renew_at(self.lease.expiration,
                                               self.opts.renew_margin_seconds,
                                               self.opts.subnet_lease_ttl)

    def _due_renew(self) -> None:
        assert self.lease is not None
        try:
            self.lease = self.registry.renew_lease(self.lease.subnet, self.lease.public_ip,
                                                   self.opts.subnet_lease_ttl)
        except EtcdUnavailable as e:
            delay = renew_retry(self.opts.subnet_lease_ttl)
            log.error("error renewing lease %s (trying again in %.1f s): %s",
                      self.lease.subnet, delay, e)
            self.deadlines["renew"] = self.clock() + delay
            return
        self._schedule_renewal()

    # -- the watch ----------------------------------------------------------------------

    def _stop_watch(self) -> None:
        self.watch_gen += 1
        if self.cancel_watch is not None:
            try:
                self.cancel_watch()
            except Exception as e:  # noqa: BLE001 (etcd may be gone; the watch is over)
                log.debug("cancelling the watch: %s", e)
            self.cancel_watch = None

    def _due_watch(self) -> None:
        """(Re-)list the leases, reset the table and watch from the listed revision."""
        self.deadlines.pop("watch")
        self._stop_watch()
        gen = self.watch_gen
        try:
            listed, revision = self.registry.list_leases()
            self._check_own(listed, complete=True)
            self._routes_changed(self.table.reset(listed))
            self.cancel_watch = self.registry.watch_leases(
                revision + 1, lambda message: self.events.put((gen, message)))
        except EtcdUnavailable as e:
            self._watch_failed(str(e))
            return
        if not self.etcd_ok:
            log.info("etcd is back: re-listed %d peers and watching again", len(self.table))
        self.etcd_ok, self.backoff = True, BACKOFF_MIN

    def _watch_failed(self, reason: str) -> None:
        if self.etcd_ok:
            log.warning("lost etcd (%s); forwarding to the %d known peers, retrying",
                        reason, len(self.table))
        self.etcd_ok = False
        self.deadlines["watch"] = self.clock() + self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)

    def _on_broken(self, message: WatchBroken) -> None:
        if message.compacted:
            log.warning("the watch fell behind a compaction (%s); re-listing", message.reason)
            self.deadlines["watch"] = self.clock()
        else:
            self._watch_failed(f"watch ended: {message.reason}")

    def _on_batch(self, batch: WatchBatch) -> None:
        assert self.lease is not None
        own = self.lease.subnet
        self._routes_changed(self.table.apply(batch.changes))
        try:
            for change in batch.changes:
                if isinstance(change, Delete) and change.subnet == own:
                    self._recover()
                elif isinstance(change, Put) and change.lease.subnet == own:
                    self._check_own([change.lease], complete=False)
        except EtcdUnavailable as e:  # the re-list will find the key missing and try again
            self._stop_watch()
            self._watch_failed(str(e))

    def _check_own(self, seen: list[Lease], complete: bool) -> None:
        """React to what etcd says about this node's own subnet; `complete` when `seen` is a
        full listing, so that a missing key means it vanished."""
        assert self.lease is not None
        mine = next((x for x in seen if x.subnet == self.lease.subnet), None)
        if mine is None:
            if complete:
                self._recover()
        elif mine.public_ip != self.lease.public_ip:
            raise LeaseLost(f"the lease for {self.lease.subnet} now belongs to "
                            f"{mine.public_ip}; exiting")

    def _recover(self) -> None:
        assert self.lease is not None
        log.warning("the lease for %s vanished from etcd (expired or deleted)",
                    self.lease.subnet)
        ttl = None if self.lease.expiration is None else self.opts.subnet_lease_ttl
        self.lease = leases.recover(self.registry, self.lease, ttl)
        self._schedule_renewal()

    def _routes_changed(self, changes: list) -> None:
        if not changes:
            return
        for ev in changes:
            log.info("peer %s %s (%s)", ev.lease.subnet, ev.kind, ev.lease.public_ip)
        assert self.backend is not None
        self.backend.set_routes(Routes.build(self.table, self.port))
