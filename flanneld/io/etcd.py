"""The etcd shell: the only place the daemon talks to etcd (v3 API, flannel's keys and values).

Keys are `<prefix>/config` and `<prefix>/subnets/<subnet_key>`; values come from
`core.lease`. A lease with a TTL is an etcd lease granted for it (flannel's `Grant` + `Put`
with `WithLease`); a reservation is a key without one. Every gRPC or client failure is
raised as `EtcdUnavailable` naming the endpoints and the operation; the caller retries.

Reconnecting is automatic: the client and its gRPC channels are made on first use, a
failed endpoint is skipped for only `RETRY_ENDPOINT` seconds, and the channels retry the
connection with a backoff capped at 2 s, so the same `EtcdRegistry` works again within
seconds of etcd coming back. An expired auth token drops the client; the next call logs in
again. Watches do not survive an outage: the sink gets one `WatchBroken` and the caller
lists and watches again (as flannel does after a compaction).
"""

from __future__ import annotations

import logging
import posixpath
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import grpc
import pyetcd
from pyetcd.events import DeleteEvent
from pyetcd.exceptions import (
    Etcd3Exception,
    NoServerAvailableError,
    RevisionCompactedError,
    WatchTimedOut,
)
from pyetcd.utils import prefix_range_end
from pyetcd.watch import WatchResponse

from ..core.errors import ConfigError, EtcdUnavailable, LeaseConflict, LeaseFormatError
from ..core.lease import Lease, decode_lease, encode_attrs, parse_subnet_key, subnet_key
from ..core.lease_watch import Delete, Put, Sink, WatchBatch, WatchBroken
from ..core.registry import Registry

log = logging.getLogger("flanneld.etcd")

DEFAULT_PORT = 2379
RETRY_ENDPOINT = 1.0  # seconds a failed endpoint is skipped (pyetcd's default is 300)
# gRPC reconnects with exponential backoff, by default up to 120 s: cap it so that a
# restarted etcd is found again within a couple of seconds.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 30_000),  # notice a dead watch stream (etcd allows >= 5 s)
    ("grpc.keepalive_timeout_ms", 10_000),
]


@dataclass(frozen=True)
class EtcdOptions:
    """How to reach etcd (flanneld's --etcd-* flags); checked by `check_options`."""

    endpoints: tuple[str, ...] = ("http://127.0.0.1:2379",)  # http:// or https:// URLs
    prefix: str = "/coreos.com/network"
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    username: str | None = None
    password: str | None = None


def join_key(*parts: str) -> str:
    """Go's path.Join: the non-empty parts joined by "/", cleaned ("//", ".", ".." and a
    trailing "/" removed); "" when every part is empty."""
    joined = "/".join(p for p in parts if p)
    if not joined:
        return ""
    cleaned = posixpath.normpath(joined)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def parse_endpoint(url: str) -> tuple[str, int, bool]:
    """(host for a gRPC target, port, secure) of an etcd URL; ConfigError if it is not one.

    The port defaults to 2379; an IPv6 host keeps its brackets ("[fd00::1]")."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ConfigError(f"etcd endpoint {url!r} has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"etcd endpoint {url!r} is not an http:// or https:// URL "
                          "(e.g. http://127.0.0.1:2379)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return host, port, parts.scheme == "https"


def check_options(options: EtcdOptions) -> list[tuple[str, int, bool]]:
    """The parsed endpoints; ConfigError for a bad URL or a half-given credential pair."""
    if not options.endpoints:
        raise ConfigError("no etcd endpoints given")
    if bool(options.certfile) != bool(options.keyfile):
        given, missing = (("certfile", "keyfile") if options.certfile
                          else ("keyfile", "certfile"))
        raise ConfigError(f"etcd client {given} {options.certfile or options.keyfile} given "
                          f"without a {missing}: give both or neither")
    if bool(options.username) != bool(options.password):
        raise ConfigError("etcd username and password go together: give both or neither")
    return [parse_endpoint(url) for url in options.endpoints]


def _read(kind: str, path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"cannot read the etcd {kind} {path}: {e.strerror}") from None


def _describe(error: BaseException) -> str:
    """What went wrong, with gRPC's status when pyetcd wrapped it in its own exception."""
    rpc = error if isinstance(error, grpc.RpcError) else error.__context__
    if isinstance(rpc, grpc.RpcError) and hasattr(rpc, "code"):
        return f"{rpc.code().name}: {rpc.details()}"
    if isinstance(error, NoServerAvailableError):
        return f"every endpoint failed less than {RETRY_ENDPOINT:g} s ago"
    if isinstance(error, WatchTimedOut):
        return "no answer to the watch request in time"
    return str(error) or type(error).__name__


class EtcdRegistry:
    """Leases and the network config in etcd, as flannel's etcd subnet registry keeps them.

    Safe to use from several threads. `clock` gives the time base of `Lease.expiration`;
    `timeout` (seconds) bounds every request and the creation of a watch."""

    def __init__(self, options: EtcdOptions, clock: Callable[[], float] = time.monotonic,
                 timeout: float = 5.0) -> None:
        self._endpoints = check_options(options)
        self._options = options
        self._clock = clock
        self._timeout = timeout
        self._creds = None
        if any(secure for _, _, secure in self._endpoints):
            self._creds = grpc.ssl_channel_credentials(
                _read("CA file", options.cafile), _read("key file", options.keyfile),
                _read("certificate file", options.certfile))
        self._where = ",".join(options.endpoints)
        self._config_key = join_key(options.prefix, "config")
        self._subnets = join_key(options.prefix, "subnets") + "/"
        self._lock = threading.Lock()
        self._etcd: pyetcd.MultiEndpointEtcd3Client | None = None
        self._watches: set[_Watch] = set()

    # -- the client and its errors

    def _client(self) -> pyetcd.MultiEndpointEtcd3Client:
        with self._lock:
            if self._etcd is None:
                endpoints = [pyetcd.Endpoint(host, port, secure, self._creds if secure else None,
                                             time_retry=RETRY_ENDPOINT, opts=CHANNEL_OPTIONS)
                             for host, port, secure in self._endpoints]
                try:  # logs in when a username is given
                    self._etcd = pyetcd.MultiEndpointEtcd3Client(
                        endpoints=endpoints, timeout=self._timeout, failover=True,
                        user=self._options.username, password=self._options.password)
                    # The token also travels as metadata; gRPC refuses call credentials
                    # on http channels, which would fail every call.
                    self._etcd.call_credentials = None
                except BaseException:
                    for endpoint in endpoints:
                        endpoint.close()
                    raise
            return self._etcd

    def _drop_client(self) -> None:
        with self._lock:
            etcd, self._etcd = self._etcd, None
        if etcd is not None:
            etcd.close()

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Raise any etcd or gRPC failure inside as EtcdUnavailable("cannot <action> ...")."""
        try:
            yield
        except (grpc.RpcError, Etcd3Exception) as e:
            rpc = e if isinstance(e, grpc.RpcError) else e.__context__
            if getattr(rpc, "code", None) and rpc.code() == grpc.StatusCode.UNAUTHENTICATED:
                self._drop_client()  # an expired token: log in again next time
            raise EtcdUnavailable(f"cannot {action} at etcd {self._where}: "
                                  f"{_describe(e)}") from e

    def _expiration(self, etcd: pyetcd.MultiEndpointEtcd3Client, lease_id: int) -> float | None:
        """clock() + the etcd lease's remaining TTL; None for a key without a lease."""
        if not lease_id:
            return None
        remaining: int = etcd.get_lease_info(lease_id).TTL  # -1 once expired or revoked
        return self._clock() + max(remaining, 0)

    def _key(self, subnet: IPv4Network) -> str:
        return self._subnets + subnet_key(subnet)

    # -- the registry

    def get_network_config(self) -> str | None:
        """The text at <prefix>/config; None when the key does not exist."""
        with self._errors(f"read {self._config_key}"):
            value, _meta = self._client().get(self._config_key)
        return None if value is None else value.decode("utf-8", errors="replace")

    def create_network_config(self, text: str) -> tuple[bool, str]:
        """Write `text` at <prefix>/config unless the key exists, in one transaction:
        (True, text) when written, else (False, the text already there)."""
        with self._errors(f"create {self._config_key}"):
            etcd = self._client()
            created, responses = etcd.transaction(
                compare=[etcd.transactions.version(self._config_key) == 0],
                success=[etcd.transactions.put(self._config_key, text)],
                failure=[etcd.transactions.get(self._config_key)])
        if created:
            log.info("created %s", self._config_key)
            return True, text
        [(value, _meta)] = responses[0]  # the failure branch's get, same revision
        return False, value.decode("utf-8", errors="replace")

    def list_leases(self) -> tuple[list[Lease], int]:
        """Every lease under <prefix>/subnets/ (malformed ones skipped, logged) and the
        revision of the listing: watch from revision + 1 to miss nothing."""
        leases: list[Lease] = []
        with self._errors(f"list the leases under {self._subnets}"):
            etcd = self._client()
            response = etcd.get_prefix_response(self._subnets)
            for kv in response.kvs:
                key = kv.key.decode("utf-8", errors="replace")
                try:
                    lease = decode_lease(key, kv.value, None)
                except LeaseFormatError as e:
                    log.warning("skipping %s: %s", key, e)
                    continue
                leases.append(replace(lease, expiration=self._expiration(etcd, kv.lease)))
        return leases, response.header.revision

    def create_lease(self, subnet: IPv4Network, public_ip: IPv4Address,
                     ttl: int | None, backend_data: str | None = None) -> Lease:
        """Create the subnet's key if it does not exist yet, with an etcd lease of `ttl` s
        (None: a reservation). LeaseConflict when the key exists already."""
        key = self._key(subnet)
        value = encode_attrs(public_ip, backend_data)
        with self._errors(f"create {key}"):
            etcd = self._client()
            start = self._clock()
            granted = etcd.lease(ttl) if ttl is not None else None
            # An error from the txn leaves the grant alone: the put may have happened.
            created, _ = etcd.transaction(
                compare=[etcd.transactions.version(key) == 0],
                success=[etcd.transactions.put(key, value,
                                               lease=granted.id if granted else None)],
                failure=[])
            if not created:
                if granted is not None:
                    etcd.revoke_lease(granted.id)
                raise LeaseConflict(f"cannot create {key}: the key exists already "
                                    f"(another node leased {subnet} first)")
        log.info("created lease %s for %s (%s)", subnet, public_ip, _ttl_text(granted))
        return decode_lease(key, value, None if granted is None else start + granted.ttl)

    def renew_lease(self, subnet: IPv4Network, public_ip: IPv4Address,
                    ttl: int | None, backend_data: str | None = None) -> Lease:
        """flannel's updateSubnet: put the key with a NEW etcd lease of `ttl` s (None: no
        lease, a reservation). The old etcd lease is left to expire without its key."""
        key = self._key(subnet)
        value = encode_attrs(public_ip, backend_data)
        with self._errors(f"renew {key}"):
            etcd = self._client()
            start = self._clock()
            granted = etcd.lease(ttl) if ttl is not None else None
            etcd.put(key, value, lease=granted)
        log.info("renewed lease %s for %s (%s)", subnet, public_ip, _ttl_text(granted))
        return decode_lease(key, value, None if granted is None else start + granted.ttl)

    def delete_lease(self, subnet: IPv4Network) -> None:
        """Delete the subnet's key; a key already gone is fine."""
        key = self._key(subnet)
        with self._errors(f"delete {key}"):
            deleted = self._client().delete(key)
        log.info("deleted lease %s" if deleted else "lease %s was already gone", subnet)

    def watch_leases(self, start_revision: int, sink: Sink) -> Callable[[], None]:
        """Watch <prefix>/subnets/ from `start_revision`; return a function that cancels.

        The sink gets a WatchBatch per etcd response, then at most one WatchBroken, after
        which the watch is over; it runs on pyetcd's watch thread and must not block long,
        and may be called before this returns (a compacted start revision). cancel() waits
        for a sink call in progress, and no call comes after it has returned. When the
        watch cannot be created (etcd down, no reply within the timeout) this raises
        EtcdUnavailable and the sink is never called."""
        what = f"watch {self._subnets} from revision {start_revision}"
        watch = _Watch(self, sink, what)
        with self._lock:
            self._watches.add(watch)
        try:
            with self._errors(what):
                watcher = self._client().watcher
                try:
                    watch_id = watcher.add_callback(
                        self._subnets, watch.on_response, start_revision=start_revision,
                        range_end=prefix_range_end(self._subnets.encode()))
                except RevisionCompactedError as e:  # refused at creation, not later
                    watch.on_response(e)
                    return watch.cancel
        except BaseException:
            watch.cancel()
            raise
        watch.started(watcher, watch_id)
        log.debug("watching %s from revision %d", self._subnets, start_revision)
        return watch.cancel

    def _batch(self, response: WatchResponse) -> WatchBatch:
        """A watch response as lease changes (called on the watch thread)."""
        changes: list[Put | Delete] = []
        with self._errors("read the TTL of a watched lease"):
            etcd = self._client()
            for event in response.events:
                key = event.key.decode("utf-8", errors="replace")
                if isinstance(event, DeleteEvent):
                    subnet = parse_subnet_key(key)
                    if subnet is None:
                        log.warning("skipping the deletion of %s: not a lease key", key)
                    else:
                        changes.append(Delete(subnet))
                    continue
                try:
                    lease = decode_lease(key, event.value, None)
                except LeaseFormatError as e:
                    log.warning("skipping %s: %s", key, e)
                    continue
                changes.append(Put(replace(lease, expiration=self._expiration(etcd, event.lease))))
        return WatchBatch(tuple(changes), response.header.revision)

    def _forget(self, watch: _Watch) -> None:
        with self._lock:
            self._watches.discard(watch)

    def close(self) -> None:
        """Cancel every watch (their sinks hear nothing more) and close the connections.
        The registry may be used again afterwards: it reconnects on the next call."""
        with self._lock:
            watches, self._watches = self._watches, set()
        for watch in watches:
            watch.cancel()
        self._drop_client()


def _ttl_text(granted: pyetcd.Lease | None) -> str:
    return "a reservation, no ttl" if granted is None else f"ttl {granted.ttl} s"


class _Watch:
    """One watch's state: over after a WatchBroken or cancel(), silent from then on."""

    def __init__(self, registry: EtcdRegistry, sink: Sink, what: str) -> None:
        self._registry = registry
        self._sink = sink
        self._what = what
        self._lock = threading.RLock()  # held while the sink runs; the sink may cancel
        self._over = False
        self._watcher = None
        self._id: int | None = None

    def started(self, watcher: Any, watch_id: int) -> None:
        with self._lock:
            self._watcher, self._id = watcher, watch_id
            over = self._over
        if over:  # broken or cancelled before the id was known
            watcher.cancel(watch_id)

    def cancel(self) -> None:
        with self._lock:
            self._over = True
            watcher, watch_id = self._watcher, self._id
            self._watcher = self._id = None
        self._registry._forget(self)
        if watcher is not None:
            watcher.cancel(watch_id)

    def on_response(self, response: object) -> None:
        """pyetcd's callback: a WatchResponse, an exception, or None (stream closed)."""
        with self._lock:
            if self._over:
                return
            if isinstance(response, WatchResponse):
                try:
                    item: WatchBatch | WatchBroken = self._registry._batch(response)
                except EtcdUnavailable as e:
                    item = WatchBroken(False, str(e))
            elif isinstance(response, RevisionCompactedError):
                item = WatchBroken(True, f"cannot {self._what}: etcd compacted its history "
                                         f"up to revision {response.compacted_revision}")
            elif response is None:
                item = WatchBroken(False, f"cannot {self._what}: the watch stream was closed")
            else:
                error = (response if isinstance(response, BaseException)
                         else RuntimeError(repr(response)))
                item = WatchBroken(False, f"cannot {self._what} at etcd "
                                          f"{self._registry._where}: {_describe(error)}")
            if isinstance(item, WatchBroken):
                log.warning("watch broken: %s", item.reason)
                self.cancel()
            try:
                self._sink(item)
            except Exception:
                log.exception("the lease watch sink failed on %r", item)


if TYPE_CHECKING:  # the protocol, checked statically
    _: Registry = EtcdRegistry(EtcdOptions())
