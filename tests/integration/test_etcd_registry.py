"""flanneld.io.etcd against a real etcd 3.4 running in a network namespace of the test's:
what etcd holds (checked with etcdctl in the same namespace, `EtcdServer.etcdctl`), racing
nodes, malformed keys, an outage, TLS and authentication. What every registry must do,
the in-memory one included, is test_registry_contract.py's. One etcd serves most tests,
each under a prefix of its own; the outage and TLS tests get their own (etcd_worker.py).
"""

from __future__ import annotations

import json
import pickle
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network, ip_address
from pathlib import Path

import pytest

from flanneld.core.errors import ConfigError, EtcdUnavailable, LeaseConflict
from flanneld.core.lease import Lease, encode_attrs
from flanneld.core.lease_policy import LEASE_TTL
from flanneld.core.lease_watch import Delete, Put, WatchBroken
from flanneld.io.etcd import EtcdOptions, EtcdRegistry
from lab.etcd import EtcdServer

from .etcd_worker import CLIENT_PORT, TIMEOUT, about

pytestmark = pytest.mark.integration

NET_A, NET_B, NET_C = (IPv4Network(f"10.244.{i}.0/24") for i in (3, 4, 5))
IP_A, IP_B = IPv4Address("192.168.5.2"), IPv4Address("192.168.5.3")


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory removed after the test (certificates)."""
    folder = Path(tempfile.mkdtemp(prefix="pft-etcd-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


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


# -- the tests

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
