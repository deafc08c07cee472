"""flanneld.io.etcd without etcd: URLs, keys, option checks and the watch's delivery rules."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyetcd.etcdrpc import ResponseHeader, kv_pb2
from pyetcd.events import new_event
from pyetcd.exceptions import RevisionCompactedError
from pyetcd.watch import WatchResponse

from flanneld.core.errors import ConfigError
from flanneld.core.lease import Lease, encode_attrs
from flanneld.core.lease_watch import Delete, Put
from flanneld.io.etcd import (
    EtcdOptions,
    EtcdRegistry,
    WatchBatch,
    WatchBroken,
    _Watch,
    check_options,
    join_key,
    parse_endpoint,
)


@pytest.mark.parametrize(("parts", "key"), [
    (("/coreos.com/network", "config"), "/coreos.com/network/config"),
    (("/coreos.com/network/", "subnets"), "/coreos.com/network/subnets"),
    (("//coreos.com//network//", "config"), "/coreos.com/network/config"),
    (("/a/./b/../c", "config"), "/a/c/config"),
    (("/../a", "config"), "/a/config"),
    (("/", "config"), "/config"),
    (("", "config"), "config"),
    (("coreos.com/network", ""), "coreos.com/network"),
    (("", ""), ""),
])
def test_join_key_is_gos_path_join(parts: tuple[str, str], key: str) -> None:
    assert join_key(*parts) == key


@given(st.lists(st.text(alphabet="/.ab", max_size=8), max_size=4))
def test_join_key_is_clean(parts: list[str]) -> None:
    key = join_key(*parts)
    assert "//" not in key and (key == "/" or not key.endswith("/"))
    assert join_key(key) == key
    assert key.startswith("/") == "/".join(p for p in parts if p).startswith("/")


@pytest.mark.parametrize(("url", "parsed"), [
    ("http://127.0.0.1:2379", ("127.0.0.1", 2379, False)),
    ("https://etcd.example.com:4001", ("etcd.example.com", 4001, True)),
    ("http://10.0.0.5", ("10.0.0.5", 2379, False)),
    ("https://[fd00::1]:2379/", ("[fd00::1]", 2379, True)),
    (" http://127.0.0.1:12379 ", ("127.0.0.1", 12379, False)),
])
def test_parse_endpoint(url: str, parsed: tuple[str, int, bool]) -> None:
    assert parse_endpoint(url) == parsed


@pytest.mark.parametrize("url", ["127.0.0.1:2379", "unix:///run/etcd.sock", "http://:2379",
                                 "http://etcd:port", "http://etcd:99999", "etcd", ""])
def test_parse_endpoint_refuses_what_is_not_an_http_url(url: str) -> None:
    with pytest.raises(ConfigError, match="etcd endpoint"):
        parse_endpoint(url)


@pytest.mark.parametrize(("options", "message"), [
    (EtcdOptions(endpoints=()), "no etcd endpoints"),
    (EtcdOptions(certfile="/pki/client.pem"), "certfile /pki/client.pem given without a keyfile"),
    (EtcdOptions(keyfile="/pki/client-key.pem"), "keyfile /pki/client-key.pem given without"),
    (EtcdOptions(username="flannel"), "username and password go together"),
    (EtcdOptions(password="secret"), "username and password go together"),
    (EtcdOptions(endpoints=("http://a:2379", "etcd-b:2379")), "'etcd-b:2379'"),
])
def test_bad_options_are_config_errors(options: EtcdOptions, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_options(options)
    with pytest.raises(ConfigError, match=message):
        EtcdRegistry(options)


def test_an_unreadable_tls_file_is_a_config_error() -> None:
    options = EtcdOptions(("https://127.0.0.1:2379",), cafile="/nonexistent/ca.pem")
    with pytest.raises(ConfigError, match="cannot read the etcd CA file /nonexistent/ca.pem"):
        EtcdRegistry(options)


def test_the_registry_does_not_connect_before_it_is_used() -> None:
    EtcdRegistry(EtcdOptions(("http://192.0.2.1:2379", "http://192.0.2.2:2379"))).close()


# -- the watch's delivery rules, fed pyetcd's callbacks by hand

class Unavailable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "Socket closed"


def response(revision: int, *events: tuple[int, str, str]) -> WatchResponse:
    made = [new_event(kv_pb2.Event(type=kind, kv=kv_pb2.KeyValue(key=key.encode(),
                                                                   value=value.encode())))
            for kind, key, value in events]
    return WatchResponse(ResponseHeader(revision=revision), made)


@pytest.fixture
def watch() -> Iterator[tuple[_Watch, list]]:
    registry = EtcdRegistry(EtcdOptions(("http://192.0.2.1:2379",)))
    seen: list = []
    yield _Watch(registry, seen.append, "watch /coreos.com/network/subnets/"), seen
    registry.close()


def test_responses_become_batches_and_bad_keys_are_skipped(watch) -> None:
    w, seen = watch
    net, ip = IPv4Network("10.244.3.0/24"), IPv4Address("192.168.5.2")
    prefix = "/coreos.com/network/subnets/"
    w.on_response(response(7, (kv_pb2.Event.PUT, prefix + "10.244.3.0-24", encode_attrs(ip)),
                           (kv_pb2.Event.PUT, prefix + "garbage", encode_attrs(ip)),
                           (kv_pb2.Event.PUT, prefix + "10.244.4.0-24", "not json"),
                           (kv_pb2.Event.DELETE, prefix + "garbage", ""),
                           (kv_pb2.Event.DELETE, prefix + "10.244.3.0-24", "")))
    assert seen == [WatchBatch((Put(Lease(net, ip, None)), Delete(net)), 7)]


@pytest.mark.parametrize(("failure", "compacted", "reason"), [
    (Unavailable(), False, "UNAVAILABLE: Socket closed"),
    (None, False, "the watch stream was closed"),
    (RevisionCompactedError(42), True, "compacted its history up to revision 42"),
])
def test_a_failure_is_one_watch_broken_then_silence(watch, failure, compacted,
                                                    reason) -> None:
    w, seen = watch
    w.on_response(failure)
    w.on_response(Unavailable())
    w.on_response(response(9))
    assert len(seen) == 1 and isinstance(seen[0], WatchBroken), seen
    assert seen[0].compacted is compacted and reason in seen[0].reason
    assert "watch /coreos.com/network/subnets/" in seen[0].reason


def test_nothing_is_delivered_after_cancel(watch) -> None:
    w, seen = watch
    w.on_response(response(3))
    w.cancel()
    w.on_response(response(4))
    w.on_response(Unavailable())
    assert seen == [WatchBatch((), 3)]


def test_a_failing_sink_is_logged_and_the_watch_goes_on(caplog) -> None:
    registry = EtcdRegistry(EtcdOptions(("http://192.0.2.1:2379",)))
    calls: list = []

    def sink(item: object) -> None:
        calls.append(item)
        raise RuntimeError("sink bug")

    w = _Watch(registry, sink, "watch x")
    w.on_response(response(3))
    w.on_response(response(4))
    registry.close()
    assert [c.revision for c in calls] == [3, 4]
    assert "the lease watch sink failed" in caplog.text
