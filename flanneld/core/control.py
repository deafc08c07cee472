"""flanneld's control plane as a sans-IO state machine, after aioquic's `QuicConnection`.

`Control` decides everything that is not per packet: when to read the network config and
when to give up waiting, when to lease, list, watch, renew and re-create this node's lease,
how to back off while etcd is away, which routes the data plane gets, when the subnet file
must be written again, and when the daemon must exit. It never reads the clock, a file or
a socket: the shell (`flanneld.daemon`) feeds it events with the time (`handle(event,
now)`) and fires its timers (`next_deadline()`, `handle_timer(now)`); both return commands,
which the shell executes in order, feeding each one's result back as an event.

Start-up runs ReadConfig until a config is there (polling each CONFIG_POLL s while it is
absent, backing off while etcd is away), then AcquireLease, StartDataPlane and the first
WriteSubnetFile. From then on: a watch generation is listed and watched (every message is
tagged with its generation, so a cancelled watch's late messages are ignored); etcd being
away keeps the last known routes and re-lists with backoff (BACKOFF_MIN doubling to
BACKOFF_MAX); a compacted watch re-lists at once; this node's own lease is renewed before
it expires and re-created when it vanishes; the data plane and the subnet file are probed
every LIVENESS_CHECK s.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from .config import NetworkConfig
from .errors import FlannelError, LeaseLost
from .lease import Lease
from .lease_policy import renew_at, renew_retry
from .lease_watch import Delete, Event, LeaseTable, Put, WatchBatch, WatchBroken
from .routes import Routes
from .subnet_file import drift, render

log = logging.getLogger("flanneld")

CONFIG_POLL = 1.0        # seconds between looks for a missing network config (flannel's)
BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0   # etcd retries (flannel's 100 ms .. 5 s)
LIVENESS_CHECK = 1.0     # seconds between probes of the data plane and the subnet file


@dataclass(frozen=True)
class Settings:
    """The flags the control plane decides with."""

    lease_ttl: int                  # seconds (--subnet-lease-ttl)
    renew_margin: float             # seconds before expiry to renew
    ip_masq: bool                   # FLANNEL_IPMASQ in the subnet file
    iptables_resync: float | None   # seconds between iptables checks; None: no chains
    config_key: str                 # <prefix>/config, for messages
    subnet_file: str                # its path, for messages


# -- commands: what the shell is asked to do -------------------------------------------

@dataclass(frozen=True)
class ReadConfig:
    """Read <prefix>/config (seeding it from the config file): ConfigRead or EtcdFailed."""


@dataclass(frozen=True)
class AcquireLease:
    """Lease a subnet under `config`: LeaseAcquired or EtcdFailed."""

    config: NetworkConfig


@dataclass(frozen=True)
class StartDataPlane:
    """Start the backend and the iptables rules for `lease`: DataPlaneStarted."""

    config: NetworkConfig
    lease: Lease


@dataclass(frozen=True)
class WriteSubnetFile:
    """Write `text` to the subnet file; `why` None for the first write, else what was
    wrong with the file: SubnetFileWritten or SubnetFileFailed."""

    text: str
    why: str | None


@dataclass(frozen=True)
class CancelWatch:
    """Cancel the current watch, if any (nothing comes back)."""


@dataclass(frozen=True)
class ListLeases:
    """List every lease: Listed or EtcdFailed."""


@dataclass(frozen=True)
class Watch:
    """Watch the leases from `start_revision`, tagging each message (Watched) with
    `generation`: WatchStarted or EtcdFailed."""

    generation: int
    start_revision: int


@dataclass(frozen=True)
class SetRoutes:
    """Give the data plane this routing snapshot."""

    routes: Routes


@dataclass(frozen=True)
class Renew:
    """Renew this node's lease for `ttl` s: Renewed or EtcdFailed."""

    lease: Lease
    ttl: int


@dataclass(frozen=True)
class Recover:
    """Re-create this node's vanished lease (`ttl` None: as a reservation): Recovered or
    EtcdFailed; a FlannelError (LeaseLost) is fatal and the shell lets it end the run."""

    lease: Lease
    ttl: int | None


@dataclass(frozen=True)
class Probe:
    """Look at the data plane and the subnet file: Probed."""


@dataclass(frozen=True)
class ResyncIptables:
    """Restore the iptables chains if they were changed (nothing comes back)."""


@dataclass(frozen=True)
class Exit:
    """Stop everything and end the run: cleanly when `error` is None, else with it."""

    error: FlannelError | None


Command = (ReadConfig | AcquireLease | StartDataPlane | WriteSubnetFile | CancelWatch
           | ListLeases | Watch | SetRoutes | Renew | Recover | Probe | ResyncIptables | Exit)


# -- events: what happened -------------------------------------------------------------

@dataclass(frozen=True)
class ConfigRead:
    config: NetworkConfig | None   # None: there is none yet


@dataclass(frozen=True)
class LeaseAcquired:
    lease: Lease


@dataclass(frozen=True)
class DataPlaneStarted:
    mtu: int


@dataclass(frozen=True)
class SubnetFileWritten:
    pass


@dataclass(frozen=True)
class SubnetFileFailed:
    error: str


@dataclass(frozen=True)
class Listed:
    leases: tuple[Lease, ...]
    revision: int


@dataclass(frozen=True)
class WatchStarted:
    generation: int


@dataclass(frozen=True)
class Watched:
    """A message of the watch of `generation`, as it arrived from the registry."""

    generation: int
    message: WatchBatch | WatchBroken


@dataclass(frozen=True)
class Renewed:
    lease: Lease


@dataclass(frozen=True)
class Recovered:
    lease: Lease


@dataclass(frozen=True)
class EtcdFailed:
    """`command` could not reach etcd (EtcdUnavailable's message in `reason`)."""

    command: Command
    reason: str


@dataclass(frozen=True)
class Probed:
    """The data plane runs (`alive`); the subnet file holds `subnet_file` (None: it does
    not exist), or could not be read (`error`)."""

    alive: bool
    subnet_file: str | None
    error: str | None = None


@dataclass(frozen=True)
class StopRequested:
    pass


ControlEvent = (ConfigRead | LeaseAcquired | DataPlaneStarted | SubnetFileWritten
                | SubnetFileFailed | Listed | WatchStarted | Watched | Renewed | Recovered
                | EtcdFailed | Probed | StopRequested)


@dataclass(frozen=True)
class DataPlaneState:
    """What /healthz needs of the backend at the moment it is asked."""

    alive: bool
    tun_problem: str | None


class Timer(enum.Enum):
    CONFIG = "read the network config"
    ACQUIRE = "acquire a lease"
    RENEW = "renew the lease"
    WATCH = "list and watch the leases"
    LIVENESS = "probe the data plane and the subnet file"
    IPTABLES = "check the iptables chains"


class Phase(enum.Enum):
    CONFIG = "waiting for the network config"
    LEASE = "acquiring a lease"
    STARTING = "starting the data plane"
    RUNNING = "running"
    DONE = "done"


class Control:
    """The control plane of one node. Not thread-safe, except that `health`, `gauges` and
    `peers` may be called from another thread (they only read)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.phase = Phase.CONFIG
        self.config: NetworkConfig | None = None
        self.lease: Lease | None = None       # this node's own
        self.table = LeaseTable(None)         # the other nodes'
        self.generation = 0                   # of the current watch
        self.etcd_ok = True
        self.subnet_text = ""                 # what the subnet file must hold
        self._deadlines: dict[Timer, float] = {}
        self._retry = BACKOFF_MIN             # start-up retries
        self._backoff = BACKOFF_MIN           # watch re-establishment
        self._waiting = False                 # warned that the config is missing
        self._resume: int | None = None       # revision to watch from once recovered
        self._written = False                 # the subnet file was written once
        self._file_error: str | None = None   # logged once until it changes

    # -- driving it

    def start(self) -> list[Command]:
        return [ReadConfig()]

    def next_deadline(self) -> float | None:
        """When `handle_timer` is next due; None when nothing is scheduled."""
        return min(self._deadlines.values(), default=None)

    def due(self, timer: Timer) -> float | None:
        """When `timer` fires next; None when it is not scheduled."""
        return self._deadlines.get(timer)

    def handle_timer(self, now: float) -> list[Command]:
        """The commands of every timer due at `now`, earliest first."""
        out: list[Command] = []
        for timer, due in sorted(self._deadlines.items(), key=lambda item: item[1]):
            if due <= now and self._deadlines.get(timer) == due:
                del self._deadlines[timer]
                out += self._fire(timer, now)
        return out

    def handle(self, event: ControlEvent, now: float) -> list[Command]:
        """The commands that follow from `event` at `now`."""
        if self.phase is Phase.DONE:
            return []
        match event:
            case StopRequested():
                log.info("stop requested")
                return self._exit(None)
            case ConfigRead(config):
                return self._config_read(config, now)
            case LeaseAcquired(lease):
                return self._lease_acquired(lease)
            case DataPlaneStarted(mtu):
                return self._data_plane_started(mtu, now)
            case SubnetFileWritten():
                self._written, self._file_error = True, None
                return []
            case SubnetFileFailed(error):
                return self._subnet_file_failed(error)
            case Listed(leases, revision):
                return self._listed(leases, revision)
            case WatchStarted(generation):
                if generation == self.generation:
                    self._watching()
                return []
            case Watched(generation, message):
                if generation != self.generation:
                    return []  # from a watch cancelled since
                if isinstance(message, WatchBatch):
                    return self._batch(message)
                return self._broken(message, now)
            case Renewed(lease) | Recovered(lease):
                return self._own_lease(lease, now)
            case EtcdFailed(command, reason):
                return self._etcd_failed(command, reason, now)
            case Probed(alive, found, error):
                return self._probed(alive, found, error, now)
        raise TypeError(f"not a control event: {event!r}")

    # -- inspection

    def health(self, now: float, data_plane: DataPlaneState | None) -> str | None:
        """None when this node forwards; else why not, for /healthz."""
        lease = self.lease
        if lease is None:
            return "no lease yet"
        if lease.expiration is not None and now >= lease.expiration:
            return f"the lease for {lease.subnet} has expired (etcd unreachable?)"
        if data_plane is None or not data_plane.alive:
            return "the data plane is not running"
        return data_plane.tun_problem

    def gauges(self, now: float) -> dict[str, float]:
        gauges: dict[str, float] = {"peers": len(self.table),
                                    "etcd_watching": 1 if self.etcd_ok else 0}
        lease = self.lease
        if lease is not None and lease.expiration is not None:
            gauges["lease_expires_in_seconds"] = round(lease.expiration - now, 1)
        return gauges

    def peers(self) -> list[Lease]:
        return list(self.table)

    # -- start-up

    def _config_read(self, config: NetworkConfig | None, now: float) -> list[Command]:
        if config is None:
            if not self._waiting:
                log.warning("no network config at %s yet; waiting for it",
                            self.settings.config_key)
                self._waiting = True
            self._deadlines[Timer.CONFIG] = now + CONFIG_POLL
            return []
        log.info("network %s, /%d subnets from %s to %s, backend %s port %d", config.network,
                 config.subnet_len, config.subnet_min, config.subnet_max,
                 config.backend_type, config.backend_port)
        self.config, self.phase, self._retry = config, Phase.LEASE, BACKOFF_MIN
        return [AcquireLease(config)]

    def _lease_acquired(self, lease: Lease) -> list[Command]:
        assert self.config is not None
        self.lease, self.phase = lease, Phase.STARTING
        self.table = LeaseTable(lease.subnet)
        return [StartDataPlane(self.config, lease)]

    def _data_plane_started(self, mtu: int, now: float) -> list[Command]:
        assert self.config is not None and self.lease is not None
        self.phase = Phase.RUNNING
        self.subnet_text = render(self.config.network, self.lease.subnet, mtu,
                                  self.settings.ip_masq)
        self._schedule_renewal()
        self._deadlines[Timer.WATCH] = now
        self._deadlines[Timer.LIVENESS] = now + LIVENESS_CHECK
        if self.settings.iptables_resync is not None:
            self._deadlines[Timer.IPTABLES] = now + self.settings.iptables_resync
        return [WriteSubnetFile(self.subnet_text, None)]

    def _retry_start(self, timer: Timer, reason: str, now: float) -> list[Command]:
        log.warning("cannot %s yet: %s; retrying in %.1f s", timer.value, reason, self._retry)
        self._deadlines[timer] = now + self._retry
        self._retry = min(self._retry * 2, BACKOFF_MAX)
        return []

    # -- timers

    def _fire(self, timer: Timer, now: float) -> list[Command]:
        match timer:
            case Timer.CONFIG:
                return [ReadConfig()]
            case Timer.ACQUIRE:
                assert self.config is not None
                return [AcquireLease(self.config)]
            case Timer.RENEW:
                assert self.lease is not None
                return [Renew(self.lease, self.settings.lease_ttl)]
            case Timer.WATCH:
                self.generation += 1
                self._resume = None
                return [CancelWatch(), ListLeases()]
            case Timer.LIVENESS:
                return [Probe()]
            case Timer.IPTABLES:
                assert self.settings.iptables_resync is not None
                self._deadlines[Timer.IPTABLES] = now + self.settings.iptables_resync
                return [ResyncIptables()]

    # -- the watch

    def _listed(self, leases: tuple[Lease, ...], revision: int) -> list[Command]:
        assert self.lease is not None
        own = self.lease
        mine = next((x for x in leases if x.subnet == own.subnet), None)
        if mine is not None and mine.public_ip != own.public_ip:
            return self._lost(mine)
        out = self._routes(self.table.reset(leases))
        if mine is None:  # a full listing without it: it vanished
            self._resume = revision + 1
            return out + self._recover()
        return out + [Watch(self.generation, revision + 1)]

    def _watching(self) -> None:
        if not self.etcd_ok:
            log.info("etcd is back: re-listed %d peers and watching again", len(self.table))
        self.etcd_ok, self._backoff = True, BACKOFF_MIN

    def _batch(self, batch: WatchBatch) -> list[Command]:
        assert self.lease is not None
        own = self.lease
        out = self._routes(self.table.apply(batch.changes))
        for change in batch.changes:
            if isinstance(change, Delete) and change.subnet == own.subnet:
                return out + self._recover()
            if (isinstance(change, Put) and change.lease.subnet == own.subnet
                    and change.lease.public_ip != own.public_ip):
                return self._lost(change.lease)
        return out

    def _broken(self, message: WatchBroken, now: float) -> list[Command]:
        if message.compacted:
            log.warning("the watch fell behind a compaction (%s); re-listing", message.reason)
            self._deadlines[Timer.WATCH] = now
        else:
            self._watch_failed(f"watch ended: {message.reason}", now)
        return []

    def _watch_failed(self, reason: str, now: float) -> None:
        if self.etcd_ok:
            log.warning("lost etcd (%s); forwarding to the %d known peers, retrying",
                        reason, len(self.table))
        self.etcd_ok = False
        self._deadlines[Timer.WATCH] = now + self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    def _routes(self, changes: list[Event]) -> list[Command]:
        if not changes:
            return []
        assert self.config is not None
        for ev in changes:
            log.info("peer %s %s (%s)", ev.lease.subnet, ev.kind, ev.lease.public_ip)
        return [SetRoutes(Routes.build(self.table, self.config.backend_port))]

    # -- this node's lease

    def _schedule_renewal(self) -> None:
        assert self.lease is not None
        if self.lease.expiration is None:
            self._deadlines.pop(Timer.RENEW, None)  # a reservation never expires
        else:
            self._deadlines[Timer.RENEW] = renew_at(self.lease.expiration,
                                                    self.settings.renew_margin,
                                                    self.settings.lease_ttl)

    def _recover(self) -> list[Command]:
        assert self.lease is not None
        log.warning("the lease for %s vanished from etcd (expired or deleted)",
                    self.lease.subnet)
        ttl = None if self.lease.expiration is None else self.settings.lease_ttl
        return [Recover(self.lease, ttl)]

    def _own_lease(self, lease: Lease, now: float) -> list[Command]:
        self.lease = lease
        self._schedule_renewal()
        if self._resume is None:
            return []
        revision, self._resume = self._resume, None
        return [Watch(self.generation, revision)]

    def _lost(self, holder: Lease) -> list[Command]:
        assert self.lease is not None
        return self._exit(LeaseLost(f"the lease for {self.lease.subnet} now belongs to "
                                    f"{holder.public_ip}; exiting"))

    # -- failures

    def _etcd_failed(self, command: Command, reason: str, now: float) -> list[Command]:
        match command:
            case ReadConfig():
                return self._retry_start(Timer.CONFIG, reason, now)
            case AcquireLease():
                return self._retry_start(Timer.ACQUIRE, reason, now)
            case Renew(lease, ttl):
                delay = renew_retry(ttl)
                log.error("error renewing lease %s (trying again in %.1f s): %s",
                          lease.subnet, delay, reason)
                self._deadlines[Timer.RENEW] = now + delay
                return []
            case Recover():  # the re-list will find the key missing and try again
                self.generation += 1
                self._resume = None
                self._watch_failed(reason, now)
                return [CancelWatch()]
            case ListLeases() | Watch():
                self._watch_failed(reason, now)
                return []
        raise TypeError(f"{command!r} does not talk to etcd")

    def _probed(self, alive: bool, found: str | None, error: str | None,
                now: float) -> list[Command]:
        assert self.config is not None
        if not alive:
            return self._exit(FlannelError(f"the {self.config.backend_type} data plane "
                                           "stopped unexpectedly; exiting"))
        self._deadlines[Timer.LIVENESS] = now + LIVENESS_CHECK
        if error is not None:
            return self._subnet_file_failed(error)
        why = drift(found, self.subnet_text)
        if why is None:
            self._file_error = None
            return []
        return [WriteSubnetFile(self.subnet_text, why)]

    def _subnet_file_failed(self, error: str) -> list[Command]:
        """The subnet file could not be read or written: fatal at start, else logged once
        until the error changes or goes away, and tried again at the next probe."""
        if not self._written:
            return self._exit(FlannelError(f"cannot write the subnet file "
                                           f"{self.settings.subnet_file}: {error}"))
        if error != self._file_error:
            log.error("cannot check or write the subnet file %s: %s; trying again every "
                      "%.0f s", self.settings.subnet_file, error, LIVENESS_CHECK)
            self._file_error = error
        return []

    def _exit(self, error: FlannelError | None) -> list[Command]:
        self.phase = Phase.DONE
        self._deadlines.clear()
        return [Exit(error)]
