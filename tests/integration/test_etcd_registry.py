"""flanneld.io.etcd against a real etcd 3.4 running in a network namespace of the test's.

How the test reaches the namespaced etcd: the registry under test runs in a worker process
started with `ip netns exec <ns> python -c ...` (see `serve`), and the test drives it over
a pipe: each call sends a pickled (method, args) and reads a pickled result or exception
back, so the test body reads like direct use (`registry.create_lease(...)`). The whole
worker, gRPC's own threads included, lives in the namespace, and nothing is added to the
root namespace. Switching a test thread into the namespace with setns would not be
reliable: gRPC opens its connections from threads of its own, created once per process and
kept in whatever namespace their creator was in (and Python 3.11 has no os.setns).
Leases' expirations come from the worker's time.monotonic(), the same clock as the test's.

etcd itself is checked with etcdctl in the same namespace (`EtcdServer.etcdctl`). One etcd
serves most tests, each under a prefix of its own; the outage and TLS tests get their own.
"""

from __future__ import annotations

import json
import os
import pickle
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from ipaddress import IPv4Address, IPv4Network, ip_address
from pathlib import Path

import pytest

from flanneld.core.errors import ConfigError, EtcdUnavailable, LeaseConflict
from flanneld.core.lease import Lease, encode_attrs
from flanneld.core.lease_policy import LEASE_TTL
from flanneld.core.lease_watch import Delete, Put
from flanneld.io.etcd import EtcdOptions, EtcdRegistry, WatchBatch, WatchBroken
from lab.etcd import EtcdServer, etcd_server
from lab.netns import Namespaces, unique

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLIENT_PORT, PEER_PORT = 12379, 12380  # inside the test's namespaces; not etcd's defaults
TIMEOUT = 2.0  # the registry's request timeout in these tests

NET_A, NET_B, NET_C = (IPv4Network(f"10.244.{i}.0/24") for i in (3, 4, 5))
IP_A, IP_B = IPv4Address("192.168.5.2"), IPv4Address("192.168.5.3")


# -- the worker: an EtcdRegistry in a process inside the namespace

def serve() -> None:
    """The worker's loop: build the registry from the first message, then answer calls."""
    import logging
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="worker %(levelname)s %(name)s: %(message)s")
    requests, replies = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not corrupt the replies
    options, timeout = pickle.load(requests)
    registry = EtcdRegistry(options, timeout=timeout)
    watches: dict[int, tuple[queue.Queue, Callable[[], None]]] = {}
    while True:
        try:
            method, args = pickle.load(requests)
        except EOFError:
            break
        try:
            if method == "watch":
                items: queue.Queue = queue.Queue()
                watches[len(watches)] = (items, registry.watch_leases(args[0], items.put))
                result: object = len(watches) - 1
            elif method == "next":
                try:
                    result = watches[args[0]][0].get(timeout=args[1])
                except queue.Empty:
                    result = None
            elif method == "cancel":
                result = watches[args[0]][1]()
            else:
                result = getattr(registry, method)(*args)
            reply: tuple[str, object] = ("ok", result)
        except Exception as e:  # sent back and raised in the test
            reply = ("err", e)
        pickle.dump(reply, replies)
        replies.flush()
    registry.close()


class Worker:
    """The registry's methods, run in a worker process in `netns`; exceptions re-raised."""

    def __init__(self, netns: str, options: EtcdOptions, timeout: float = TIMEOUT) -> None:
        code = "from tests.integration.test_etcd_registry import serve; serve()"
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", code],
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._send((options, timeout))

    def _send(self, message: object) -> None:
        pickle.dump(message, self.proc.stdin)
        self.proc.stdin.flush()

    def call(self, method: str, *args: object, wait: float = 30.0) -> object:
        self._send((method, args))
        if not select.select([self.proc.stdout], [], [], wait)[0]:
            self.close()
            raise AssertionError(f"the registry worker did not answer {method} in {wait} s")
        status, value = pickle.load(self.proc.stdout)
        if status == "err":
            raise value
        return value

    def __getattr__(self, method: str) -> Callable[..., object]:
        return lambda *args: self.call(method, *args)

    def watch(self, start_revision: int) -> RemoteWatch:
        return RemoteWatch(self, self.call("watch", start_revision))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class RemoteWatch:
    """The items a watch's sink received in the worker, in order."""

    def __init__(self, worker: Worker, watch_id: int) -> None:
        self.worker, self.id = worker, watch_id

    def next(self, timeout: float = 5.0) -> WatchBatch | WatchBroken | None:
        return self.worker.call("next", self.id, timeout, wait=timeout + 10)

    def changes(self, count: int, timeout: float = 5.0) -> list[Put | Delete]:
        """The next `count` changes (over as many batches as it takes)."""
        found: list[Put | Delete] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            item = self.next(max(deadline - time.monotonic(), 0.01))
            assert isinstance(item, WatchBatch), f"after {found}: {item}"
            found += item.changes
        return found

    def cancel(self) -> None:
        self.worker.call("cancel", self.id)


# -- fixtures

@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    """One etcd in a namespace of its own for the module's tests."""
    spaces, base = Namespaces(), Path(tempfile.mkdtemp(prefix="pft-etcd-"))
    try:
        with etcd_server(base, spaces.make("pfetcd"), client_port=CLIENT_PORT,
                         peer_port=PEER_PORT) as server:
            yield server
    finally:
        spaces.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def make_etcd() -> Iterator[Callable[..., EtcdServer]]:
    """A factory of etcd servers, each in a fresh namespace, for tests that stop them."""
    spaces, base = Namespaces(), Path(tempfile.mkdtemp(prefix="pft-etcd-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, base, ignore_errors=True)
        stack.callback(spaces.cleanup)
        yield lambda **kw: stack.enter_context(etcd_server(
            base, spaces.make("pfetcd"), client_port=CLIENT_PORT, peer_port=PEER_PORT, **kw))


@pytest.fixture
def open_registry() -> Iterator[Callable[..., Worker]]:
    """A factory of registries (workers) on a server; all closed after the test."""
    workers: list[Worker] = []

    def open_(server: EtcdServer, prefix: str | None = None, **options: object) -> Worker:
        prefix = prefix or f"/{unique('pft')}/network"
        workers.append(Worker(server.netns, EtcdOptions((server.url,), prefix, **options)))
        return workers[-1]

    yield open_
    for worker in workers:
        worker.close()


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory removed after the test (certificates)."""
    folder = Path(tempfile.mkdtemp(prefix="pft-etcd-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def prefix() -> str:
    return f"/{unique('pft')}/network"


@pytest.fixture
def registry(etcd, prefix, open_registry) -> Worker:
    return open_registry(etcd, prefix)


# -- etcd as etcdctl sees it

def key_lease(etcd: EtcdServer, key: str) -> int:
    """The etcd lease ID a key is attached to (0: none)."""
    kvs = json.loads(etcd.etcdctl("get", key, "-w", "json")).get("kvs", [])
    assert len(kvs) == 1, f"{key}: {kvs}"
    return int(kvs[0].get("lease", 0))


def lease_ids(etcd: EtcdServer) -> set[str]:
    return set(etcd.etcdctl("lease", "list").split()[3:])  # after "found N leases"


def granted_ttl(etcd: EtcdServer, lease_id: int) -> str:
    return etcd.etcdctl("lease", "timetolive", f"{lease_id:x}").strip()


def about(expiration: float | None, seconds: float) -> bool:
    return expiration is not None and abs(expiration - time.monotonic() - seconds) < 5


# -- the tests

def test_network_config_absent_then_present(etcd, prefix, registry) -> None:
    assert registry.get_network_config() is None
    config = '{"Network": "10.244.0.0/16", "Backend": {"Type": "udp"}}'
    etcd.etcdctl("put", f"{prefix}/config", config)
    assert registry.get_network_config() == config


def test_network_config_is_created_once_by_racing_nodes_and_never_overwritten(
        etcd, prefix, open_registry) -> None:
    texts = [f'{{"Network": "10.{i}.0.0/16", "Backend": {{"Type": "udp"}}}}\n'
             for i in range(4)]
    nodes = [open_registry(etcd, prefix) for _ in texts]
    for node, text in zip(nodes, texts, strict=True):  # every request sent before any reply
        node._send(("create_network_config", (text,)))
    results = [pickle.load(node.proc.stdout) for node in nodes]
    assert all(status == "ok" for status, _ in results), results
    created = [value for _, value in results if value[0]]
    assert len(created) == 1, results
    winner = created[0][1]
    assert {value for _, value in results} == {(True, winner)} | {(False, winner)}
    [kv] = json.loads(etcd.etcdctl("get", f"{prefix}/config", "-w", "json"))["kvs"]
    assert kv["version"] == 1 and not kv.get("lease")  # one write, no etcd lease
    assert nodes[0].get_network_config() == winner
    assert nodes[0].create_network_config("{}") == (False, winner)
    assert etcd.etcdctl("get", f"{prefix}/config", "--print-value-only") == winner + "\n"


def test_create_writes_flannels_key_value_and_a_24h_etcd_lease(etcd, prefix, registry) -> None:
    lease = registry.create_lease(NET_A, IP_A, LEASE_TTL)
    assert (lease.subnet, lease.public_ip) == (NET_A, IP_A)
    assert about(lease.expiration, LEASE_TTL)
    key = f"{prefix}/subnets/10.244.3.0-24"
    assert etcd.etcdctl("get", key, "--print-value-only") == \
        '{"PublicIP":"192.168.5.2","PublicIPv6":null}\n'
    assert "granted with TTL(86400s)" in granted_ttl(etcd, key_lease(etcd, key))
    leases, revision = registry.list_leases()
    assert [(x.subnet, x.public_ip) for x in leases] == [(NET_A, IP_A)]
    assert about(leases[0].expiration, LEASE_TTL) and revision > 0


def test_create_on_an_existing_key_conflicts_and_changes_nothing(etcd, prefix,
                                                                  registry) -> None:
    registry.create_lease(NET_A, IP_A, LEASE_TTL)
    key = f"{prefix}/subnets/10.244.3.0-24"
    held, before = key_lease(etcd, key), lease_ids(etcd)
    for ttl in (LEASE_TTL, None):
        with pytest.raises(LeaseConflict, match=key):
            registry.create_lease(NET_A, IP_B, ttl)
    assert etcd.etcdctl("get", key, "--print-value-only").strip() == encode_attrs(IP_A)
    assert key_lease(etcd, key) == held
    assert lease_ids(etcd) - before == set()  # the lease granted for the attempt is revoked


def test_renew_puts_the_key_with_a_new_etcd_lease(etcd, prefix, registry) -> None:
    registry.create_lease(NET_A, IP_A, LEASE_TTL)
    key = f"{prefix}/subnets/10.244.3.0-24"
    old = key_lease(etcd, key)
    lease = registry.renew_lease(NET_A, IP_A, 600)
    new = key_lease(etcd, key)
    assert new not in (old, 0) and about(lease.expiration, 600)
    assert "granted with TTL(600s)" in granted_ttl(etcd, new)
    assert "granted with TTL(86400s)" in granted_ttl(etcd, old)  # left to expire, as flannel


def test_reservations_have_no_etcd_lease(etcd, prefix, registry) -> None:
    assert registry.create_lease(NET_B, IP_B, None) == Lease(NET_B, IP_B, None)
    key = f"{prefix}/subnets/10.244.4.0-24"
    assert key_lease(etcd, key) == 0
    assert registry.renew_lease(NET_B, IP_B, None) == Lease(NET_B, IP_B, None)
    assert key_lease(etcd, key) == 0
    etcd.etcdctl("put", f"{prefix}/subnets/10.244.5.0-24", encode_attrs(IP_A))  # by hand
    leases, _ = registry.list_leases()
    assert sorted(leases, key=lambda x: x.subnet) == [Lease(NET_B, IP_B, None),
                                                      Lease(NET_C, IP_A, None)]


MALFORMED = [("subnets/garbage", encode_attrs(IP_A)), ("subnets/10.1.2.0-24", "not json"),
             ("subnets/10.1.3.0-24", '{"PublicIP":"nope"}'), ("subnets/10.1.4.0-24", "[1]")]


def test_malformed_keys_and_values_are_skipped(etcd, prefix, registry) -> None:
    _, revision = registry.list_leases()
    watch = registry.watch(revision + 1)
    for key, value in MALFORMED:
        etcd.etcdctl("put", f"{prefix}/{key}", value)
    registry.create_lease(NET_A, IP_A, None)
    assert registry.list_leases()[0] == [Lease(NET_A, IP_A, None)]
    etcd.etcdctl("del", f"{prefix}/subnets/garbage")
    assert watch.changes(1) == [Put(Lease(NET_A, IP_A, None))]
    registry.delete_lease(NET_A)
    assert watch.changes(1) == [Delete(NET_A)]


def test_watch_from_the_listing_sees_put_renew_delete_and_expiry(etcd, prefix,
                                                                 registry) -> None:
    registry.create_lease(NET_A, IP_A, LEASE_TTL)  # before the listing: not replayed
    _, revision = registry.list_leases()
    watch = registry.watch(revision + 1)
    registry.create_lease(NET_B, IP_B, LEASE_TTL)
    registry.renew_lease(NET_B, IP_B, LEASE_TTL)
    registry.delete_lease(NET_B)
    registry.create_lease(NET_B, IP_A, None)
    put, renew, delete, reservation = watch.changes(4)
    assert put.lease.subnet == renew.lease.subnet == NET_B and put.lease.public_ip == IP_B
    assert about(put.lease.expiration, LEASE_TTL) and about(renew.lease.expiration, LEASE_TTL)
    assert delete == Delete(NET_B) and reservation == Put(Lease(NET_B, IP_A, None))

    created = time.monotonic()
    registry.create_lease(NET_C, IP_B, 2)
    assert watch.changes(1)[0].lease.subnet == NET_C
    assert watch.changes(1, timeout=4) == [Delete(NET_C)]  # expired: etcd deletes the key
    assert time.monotonic() - created < 3.5
    watch.cancel()
    registry.create_lease(IPv4Network("10.244.9.0/24"), IP_B, None)
    assert watch.next(0.5) is None  # nothing after cancel


def test_watch_revisions_follow_etcd(etcd, prefix, registry) -> None:
    _, revision = registry.list_leases()
    watch = registry.watch(revision + 1)
    registry.create_lease(NET_A, IP_A, None)
    batch = watch.next()
    assert isinstance(batch, WatchBatch) and batch.revision == registry.list_leases()[1]


def test_a_watch_from_a_compacted_revision_breaks(etcd, prefix, registry) -> None:
    _, old = registry.list_leases()
    registry.create_lease(NET_A, IP_A, None)
    registry.delete_lease(NET_A)
    _, now = registry.list_leases()
    etcd.compact(now)
    broken = registry.watch(old + 1).next()
    assert isinstance(broken, WatchBroken) and broken.compacted, broken
    assert str(now) in broken.reason
    watch = registry.watch(now + 1)  # from the new listing it works
    registry.create_lease(NET_A, IP_A, None)
    assert watch.changes(1) == [Put(Lease(NET_A, IP_A, None))]


def elapsed(call: Callable[[], object]) -> tuple[float, BaseException | None]:
    start = time.monotonic()
    try:
        call()
    except Exception as e:
        return time.monotonic() - start, e
    return time.monotonic() - start, None


def test_an_etcd_outage_raises_breaks_watches_and_heals(make_etcd, open_registry) -> None:
    etcd = make_etcd()
    registry = open_registry(etcd)
    registry.create_lease(NET_A, IP_A, LEASE_TTL)
    _, revision = registry.list_leases()
    watch = registry.watch(revision + 1)

    etcd.send_signal(signal.SIGSTOP)  # accepts connections, answers nothing
    took, error = elapsed(registry.list_leases)
    etcd.send_signal(signal.SIGCONT)
    assert isinstance(error, EtcdUnavailable) and took < TIMEOUT + 1, (took, error)
    assert etcd.url in str(error) and "list the leases" in str(error)

    etcd.stop()
    broken = watch.next()
    assert isinstance(broken, WatchBroken) and not broken.compacted, broken
    assert watch.next(0.2) is None  # exactly one
    for call in (registry.list_leases, registry.get_network_config,
                 lambda: registry.create_lease(NET_B, IP_B, LEASE_TTL),
                 lambda: registry.renew_lease(NET_A, IP_A, LEASE_TTL),
                 lambda: registry.delete_lease(NET_A),
                 lambda: registry.watch(revision + 1)):
        took, error = elapsed(call)
        assert isinstance(error, EtcdUnavailable) and took < TIMEOUT + 1, (took, error)
        assert etcd.url in str(error)

    etcd.start()
    restarted = time.monotonic()
    while (error := elapsed(registry.list_leases)[1]) is not None:
        assert time.monotonic() - restarted < 5, f"no recovery: {error}"
        time.sleep(0.1)
    leases, revision = registry.list_leases()
    assert [x.subnet for x in leases] == [NET_A]  # same data dir, same lease
    watch = registry.watch(revision + 1)
    registry.create_lease(NET_B, IP_B, LEASE_TTL)
    assert [c.lease.subnet for c in watch.changes(1)] == [NET_B]


# -- TLS

def write_pki(folder: Path, ip: str) -> dict[str, Path]:
    """A CA, a server certificate for `ip` (also usable as a client) and a client one."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    files: dict[str, Path] = {}

    def save(name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        files[name] = folder / f"{name}.pem"
        files[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{name}-key"] = folder / f"{name}-key.pem"
        files[f"{name}-key"].write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))

    def issue(cn: str, issuer: x509.Name | None, signer, extensions) -> tuple:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1)))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical)
        return builder.sign(signer or key, hashes.SHA256()), key

    ca, ca_key = issue("pyflannel test CA", None, None,
                       [(x509.BasicConstraints(ca=True, path_length=None), True)])
    save("ca", ca, ca_key)
    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    server = issue("etcd", ca.subject, ca_key,
                   [(x509.SubjectAlternativeName([x509.IPAddress(ip_address(ip))]), False),
                    (x509.ExtendedKeyUsage(both), False)])
    save("server", *server)
    client = issue("flanneld", ca.subject, ca_key,
                   [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)])
    save("client", *client)
    return files


def test_tls_with_client_certificates(make_etcd, open_registry, scratch) -> None:
    pki = write_pki(scratch, "127.0.0.1")
    etcd = make_etcd(cert=pki["server"], key=pki["server-key"], ca=pki["ca"])
    assert etcd.url.startswith("https://")
    registry = open_registry(etcd, cafile=str(pki["ca"]), certfile=str(pki["client"]),
                             keyfile=str(pki["client-key"]))
    _, revision = registry.list_leases()
    watch = registry.watch(revision + 1)
    assert registry.create_lease(NET_A, IP_A, LEASE_TTL).subnet == NET_A
    assert [c.lease.subnet for c in watch.changes(1)] == [NET_A]
    assert registry.get_network_config() is None

    anonymous = open_registry(etcd, cafile=str(pki["ca"]))  # no client certificate
    with pytest.raises(EtcdUnavailable, match="https://127.0.0.1"):
        anonymous.list_leases()


def test_a_certificate_without_its_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="client.pem given without a keyfile"):
        EtcdRegistry(EtcdOptions((f"https://127.0.0.1:{CLIENT_PORT}",),
                                 cafile="/etc/pki/ca.pem", certfile="/etc/pki/client.pem"))


def test_username_and_password(make_etcd, open_registry) -> None:
    etcd = make_etcd()
    etcd.etcdctl("user", "add", "root:secret")
    etcd.etcdctl("auth", "enable")
    registry = open_registry(etcd, username="root", password="secret")
    _, revision = registry.list_leases()
    watch = registry.watch(revision + 1)
    registry.create_lease(NET_A, IP_A, None)
    assert watch.changes(1) == [Put(Lease(NET_A, IP_A, None))]
    with pytest.raises(EtcdUnavailable, match="authentication failed"):
        open_registry(etcd, username="root", password="wrong").list_leases()
