"""The daemon's shell: runs `core.control.Control` against etcd, the backend and files.

The loop waits for the next event (a watch message from etcd's thread, the stop request
from the signal handler) or the control's next deadline, hands it over with the time, and
executes the commands that come back in order, feeding each one's result back as an
event. Every decision (start-up order and retries, renewal, watch generations and
backoff, own-lease recovery, subnet-file drift, health) is the control's; this module only
does what it is told: read the config, lease, start the data plane and the iptables rules,
write the subnet file, list and watch, renew, probe, serve /healthz.

Start-up follows flannel's order: the network config (written from the config file when
etcd has none), the interface, the lease, the backend, the iptables rules, the subnet
file, then /healthz. etcd being away never stops forwarding: the last known routes stay.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import time
from collections import deque
from collections.abc import Callable
from ipaddress import IPv4Network

from . import backends, leases, network_config
from .backends.udp_sealed import Encryption
from .core import metrics, sealing
from .core import subnet_file as subnet_text
from .core.backend import Backend
from .core.config import NetworkConfig
from .core.control import (
    AcquireLease,
    CancelWatch,
    Command,
    ConfigRead,
    Control,
    ControlEvent,
    DataPlaneStarted,
    DataPlaneState,
    EtcdFailed,
    Exit,
    LeaseAcquired,
    Listed,
    ListLeases,
    Probe,
    Probed,
    ReadConfig,
    Recover,
    Recovered,
    Renew,
    Renewed,
    ResyncIptables,
    SetRoutes,
    Settings,
    StartDataPlane,
    StopRequested,
    SubnetFileFailed,
    SubnetFileWritten,
    Watch,
    Watched,
    WatchStarted,
    WriteSubnetFile,
)
from .core.errors import EtcdUnavailable
from .core.iptables import ChainSpec, forward_spec, masq_spec
from .core.keys import BOOT_SIZE, Identity, encode_backend_data
from .core.lease import backend_data_text
from .core.registry import Registry
from .io import cni_worker, healthz, iface, iptables, keyfile, subnet_file
from .options import Options

log = logging.getLogger("flanneld")

BackendFactory = Callable[..., Backend]   # backends.create's signature


class Daemon:
    def __init__(self, opts: Options, registry: Registry,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None,
                 config_file: network_config.ConfigFile | None = None,
                 make_backend: BackendFactory = backends.create) -> None:
        self.opts = opts
        self.registry = registry
        self.config_file = config_file
        self.clock = clock
        self.rng = rng or random.Random()
        self.make_backend = make_backend
        self.control = Control(Settings(
            lease_ttl=opts.subnet_lease_ttl, renew_margin=opts.renew_margin_seconds,
            ip_masq=opts.ip_masq,
            iptables_resync=(float(opts.iptables_resync)
                             if opts.ip_masq or opts.iptables_forward_rules else None),
            config_key=f"{opts.etcd_prefix.rstrip('/')}/config",
            subnet_file=opts.subnet_file))
        self.events: queue.SimpleQueue[ControlEvent] = queue.SimpleQueue()  # signal-safe put
        self.backend: Backend | None = None
        self.underlay: iface.Iface | None = None
        self.chains: list[ChainSpec] = []
        self.cancel_watch: Callable[[], None] | None = None
        self.server: healthz.HealthServer | None = None
        self.encryption: Encryption | None = None
        self.advertised: str | None = None    # the lease's BackendData (the encrypted mode)
        self.cni: cni_worker.CniWorker | None = None

    # -- entry points -------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the loop to shut down (safe from a signal handler); the lease is kept."""
        self.events.put(StopRequested())

    def run(self) -> int:
        """Run until stopped (0) or a fatal error (raised as FlannelError)."""
        try:
            self._start_cni_worker()
            done = self._execute(self.control.start())
            while done is None:
                deadline = self.control.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - self.clock())
                try:
                    event = self.events.get(timeout=timeout)
                except queue.Empty:
                    pass
                else:
                    done = self._execute(self.control.handle(event, self.clock()))
                if done is None:
                    done = self._execute(self.control.handle_timer(self.clock()))
        finally:
            self._shut_down()
        if done.error is not None:
            raise done.error
        if self.control.lease is not None:
            log.info("stopped; the lease for %s stays in etcd for a restart to reuse",
                     self.control.lease.subnet)
        return 0

    # -- inspection (called from the /healthz thread) -----------------------------------

    def health(self) -> str | None:
        backend = self.backend
        state = (None if backend is None
                 else DataPlaneState(backend.alive(), backend.tun_problem()))
        return self.control.health(self.clock(), state)

    def metrics(self) -> str:
        backend = self.backend
        gauges = self.control.gauges(self.clock())
        gauges["tun_up"] = 1 if backend is not None and backend.tun_problem() is None else 0
        if backend is None:
            return metrics.render({}, gauges)
        return metrics.render(backend.counters(), {**gauges, **backend.gauges()})

    def peer_list(self) -> list[dict[str, str]]:
        return [{"subnet": str(x.subnet), "public_ip": str(x.public_ip)}
                for x in self.control.peers()]

    # -- executing commands -------------------------------------------------------------

    def _execute(self, commands: list[Command]) -> Exit | None:
        """Run `commands` and those their results lead to, in order; the Exit if one came."""
        pending = deque(commands)
        while pending:
            command = pending.popleft()
            if isinstance(command, Exit):
                return command
            try:
                result = self._do(command)
            except EtcdUnavailable as e:
                result = EtcdFailed(command, str(e))
            if result is not None:
                pending.extend(self.control.handle(result, self.clock()))
        return None

    def _do(self, command: Command) -> ControlEvent | None:
        match command:
            case ReadConfig():
                return ConfigRead(network_config.fetch(self.registry, self.config_file,
                                                       self.control.settings.config_key))
            case AcquireLease(config):
                underlay = self._underlay()
                self._load_keys(config)
                public_ip = self.opts.public_ip or underlay.address
                previous = subnet_text.previous_subnet(subnet_file.read(self.opts.subnet_file))
                return LeaseAcquired(leases.acquire(self.registry, config, public_ip, previous,
                                                    self.opts.subnet_lease_ttl, self.rng,
                                                    self.advertised))
            case StartDataPlane(config, lease):
                underlay = self._underlay()
                self.backend = self.make_backend(
                    config.backend_type, iface_addr=underlay.address, iface_mtu=underlay.mtu,
                    port=config.backend_port, network=config.network, subnet=lease.subnet,
                    offload=self.opts.udp_offload, encryption=self.encryption)
                self.backend.start()
                self._install_iptables(config.network, lease.subnet)
                return DataPlaneStarted(self.backend.mtu)
            case WriteSubnetFile(text, why):
                return self._write_subnet_file(text, why)
            case CancelWatch():
                self._cancel_watch()
            case ListLeases():
                listed, revision = self.registry.list_leases()
                return Listed(tuple(listed), revision)
            case Watch(generation, start_revision):
                self.cancel_watch = self.registry.watch_leases(
                    start_revision, lambda message: self.events.put(Watched(generation, message)))
                return WatchStarted(generation)
            case SetRoutes(routes):
                assert self.backend is not None
                self.backend.set_routes(routes)
            case Renew(lease, ttl):
                return Renewed(self.registry.renew_lease(lease.subnet, lease.public_ip, ttl,
                                                         self.advertised))
            case Recover(lease, ttl):
                return Recovered(leases.recover(self.registry, lease, ttl, self.advertised))
            case Probe():
                assert self.backend is not None
                alive = self.backend.alive()
                try:
                    return Probed(alive, subnet_file.current(self.opts.subnet_file))
                except OSError as e:
                    return Probed(alive, None, e.strerror or str(e))
            case ResyncIptables():
                self._resync_iptables()
        return None

    def _load_keys(self, config: NetworkConfig) -> None:
        """For an encrypted network: this node's key pair (made on first start), a fresh
        boot value, and what the lease advertises. ConfigError when the key file cannot be
        used or this OpenSSL lacks the algorithm: never clear text instead."""
        if config.encryption is None or self.encryption is not None:
            return
        sealing.aead(config.encryption, bytes(sealing.KEY_SIZE))  # the algorithm is there
        path = self.opts.udp_key_file
        private, made = keyfile.load_or_create(path)
        identity = Identity.from_private(private, os.urandom(BOOT_SIZE))
        self.encryption = Encryption(identity, config.encryption, str(config.network))
        self.advertised = backend_data_text(encode_backend_data(identity))
        log.info("encrypting with %s; %s key %s, public key %s", config.encryption,
                 "made a new" if made else "using the", path,
                 encode_backend_data(identity)["PublicKey"])

    def _underlay(self) -> iface.Iface:
        if self.underlay is None:
            self.underlay = iface.select(list(self.opts.iface))
            log.info("using interface %s (%s, MTU %d), public IP %s", self.underlay.name,
                     self.underlay.address, self.underlay.mtu,
                     self.opts.public_ip or self.underlay.address)
        return self.underlay

    def _write_subnet_file(self, text: str, why: str | None) -> ControlEvent:
        path = self.opts.subnet_file
        try:
            subnet_file.write(path, text)
        except OSError as e:
            return SubnetFileFailed(e.strerror or str(e))
        if why is not None:
            log.warning("the subnet file %s %s; wrote it again", path, why)
            return SubnetFileWritten()
        assert self.backend is not None and self.control.lease is not None
        log.info("wrote %s: subnet %s, MTU %d", path, self.control.lease.subnet,
                 self.backend.mtu)
        if self.opts.healthz_port:
            self.server = healthz.HealthServer(self.opts.healthz_ip, self.opts.healthz_port,
                                               healthz.Probe(self.health, self.metrics,
                                                             self.peer_list))
            self.server.start()
        return SubnetFileWritten()

    def _install_iptables(self, network: IPv4Network, subnet: IPv4Network) -> None:
        if self.opts.ip_masq:
            self.chains.append(masq_spec(network, subnet, iptables.supports_random_fully()))
        if self.opts.iptables_forward_rules:
            self.chains.append(forward_spec(network))
        for spec in self.chains:
            iptables.ensure(spec)

    def _resync_iptables(self) -> None:
        for spec in self.chains:
            try:
                if iptables.ensure(spec):
                    log.warning("iptables chain %s had been changed; restored it", spec.chain)
            except Exception as e:  # noqa: BLE001 (keep running; try again next time)
                log.error("cannot restore iptables chain %s: %s", spec.chain, e)

    def _cancel_watch(self) -> None:
        cancel, self.cancel_watch = self.cancel_watch, None
        if cancel is not None:
            try:
                cancel()
            except Exception as e:  # noqa: BLE001 (etcd may be gone; the watch is over)
                log.debug("cancelling the watch: %s", e)

    def _start_cni_worker(self) -> None:
        if not self.opts.cni_socket:
            return
        plugin = cni_worker.find_plugin(self.opts.cni_plugin)
        if plugin is None:
            log.info("no pyflannel executable found (--cni-plugin): CNI calls run cold")
            return
        self.cni = cni_worker.CniWorker(plugin, self.opts.cni_socket)
        self.cni.start()

    def _shut_down(self) -> None:
        if self.cni is not None:
            self.cni.stop()
        self._cancel_watch()
        if self.backend is not None:
            self.backend.stop()
        if self.server is not None:
            self.server.stop()
        for spec in self.chains:
            try:
                iptables.remove(spec)
            except Exception as e:  # noqa: BLE001 (shutting down: log and go on)
                log.warning("could not remove iptables chain %s: %s", spec.chain, e)
