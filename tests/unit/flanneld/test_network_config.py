"""flanneld.network_config: the --net-config-path file, validated before etcd is touched and
written to etcd only when etcd has no config (one writer wins a race; an existing config
is never overwritten, and a different one is reported)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from flanneld import __main__ as entry
from flanneld.core.config import parse
from flanneld.core.errors import ConfigError, EtcdUnavailable
from flanneld.network_config import ConfigFile, fetch, read_file

from .fakes import MemoryRegistry

KEY = "/coreos.com/network/config"
FILE_TEXT = '{"Network": "10.244.0.0/16", "Backend": {"Type": "udp"}}\n'
OTHER_TEXT = '{"Network": "10.245.0.0/16", "SubnetLen": 25}'


def config_file(text: str = FILE_TEXT) -> ConfigFile:
    return ConfigFile("/etc/kube-pyflannel/net-conf.json", text, parse(text))


def test_read_file_keeps_the_text_and_parses_it(tmp_path: Path) -> None:
    path = tmp_path / "net-conf.json"
    path.write_text(FILE_TEXT)
    assert read_file(str(path)) == ConfigFile(str(path), FILE_TEXT, parse(FILE_TEXT))


@pytest.mark.parametrize("content, message", [
    (None, "cannot read the network config file .*: No such file or directory"),
    (b"\xff{}", "is not UTF-8"),
    (b"{nope", "net-conf.json: invalid network config: not JSON"),
    (b'{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}', "'vxlan' is not supported"),
])
def test_a_bad_file_is_a_config_error_naming_it(tmp_path: Path, content: bytes | None,
                                                message: str) -> None:
    path = tmp_path / "net-conf.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        read_file(str(path))


def test_without_a_file_an_absent_config_is_waited_for() -> None:
    store = MemoryRegistry()
    assert fetch(store, None, KEY) is None
    store.config = FILE_TEXT
    assert fetch(store, None, KEY) == parse(FILE_TEXT)
    assert store.calls == ["get config", "get config"]


def test_an_absent_config_is_written_from_the_file_verbatim(caplog) -> None:
    store = MemoryRegistry()
    with caplog.at_level(logging.INFO):
        assert fetch(store, config_file(), KEY) == parse(FILE_TEXT)
    assert store.config == FILE_TEXT
    assert store.calls == ["get config", "create config"]
    assert f"no network config at {KEY}: wrote the one from" in caplog.text


def test_a_node_that_loses_the_race_uses_the_winners_config(caplog) -> None:
    store = MemoryRegistry()
    store.before_create_config = lambda: setattr(store, "config", OTHER_TEXT)
    with caplog.at_level(logging.INFO):
        assert fetch(store, config_file(), KEY) == parse(OTHER_TEXT)
    assert store.config == OTHER_TEXT  # not overwritten
    assert "another node wrote the network config" in caplog.text
    assert "Network 10.245.0.0/16 != 10.244.0.0/16" in caplog.text


def test_of_nodes_racing_exactly_one_writes() -> None:
    store = MemoryRegistry()
    files = [config_file(f'{{"Network": "10.{i}.0.0/16"}}') for i in range(5)]
    # Every node reads "absent" before any of them creates: the worst interleaving.
    absent = [store.get_network_config() for _ in files]
    assert absent == [None] * 5
    results = [store.create_network_config(f.text) for f in files]
    assert [created for created, _ in results] == [True, False, False, False, False]
    assert {text for _, text in results} == {files[0].text} == {store.config}
    # and fetch, the whole round trip, agrees with the winner on every node
    assert {fetch(store, f, KEY) for f in files} == {files[0].config}


def test_an_existing_config_is_never_overwritten(caplog) -> None:
    store = MemoryRegistry()
    store.config = OTHER_TEXT
    with caplog.at_level(logging.INFO):
        assert fetch(store, config_file(), KEY) == parse(OTHER_TEXT)
    assert store.config == OTHER_TEXT and store.calls == ["get config"]
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.getMessage() == (
        f"the network config at {KEY} differs from /etc/kube-pyflannel/net-conf.json "
        "(Network 10.245.0.0/16 != 10.244.0.0/16; SubnetLen 25 != 24; SubnetMin "
        "10.245.0.128 != 10.244.1.0; SubnetMax 10.245.255.128 != 10.244.255.0, etcd's "
        "first); using etcd's, which is never overwritten: change it there")


def test_the_same_network_written_differently_is_no_warning(caplog) -> None:
    store = MemoryRegistry()
    store.config = ('{"network": "10.244.0.0/16", "SubnetLen": 24,\n'
                    ' "Backend": {"Port": 8285, "Type": "UDP"}}')
    with caplog.at_level(logging.INFO):
        assert fetch(store, config_file(), KEY) == parse(FILE_TEXT)
    assert caplog.records == [] and store.calls == ["get config"]


def test_an_invalid_config_in_etcd_stays_fatal_and_untouched() -> None:
    store = MemoryRegistry()
    store.config = "not json"
    with pytest.raises(ConfigError, match="not JSON"):
        fetch(store, config_file(), KEY)
    assert store.config == "not json"


def test_etcd_unavailable_passes_through() -> None:
    store = MemoryRegistry()
    store.down = True
    with pytest.raises(EtcdUnavailable):
        fetch(store, config_file(), KEY)
    store.down = False

    def lost_between_get_and_create() -> None:
        raise EtcdUnavailable("etcd unreachable during create config")

    store.before_create_config = lost_between_get_and_create
    with pytest.raises(EtcdUnavailable):
        fetch(store, config_file(), KEY)
    assert store.config is None


def test_a_bad_file_exits_2_before_etcd_is_touched(tmp_path: Path, monkeypatch,
                                                   capsys) -> None:
    def no_etcd(*args, **kw):
        raise AssertionError("etcd must not be touched")

    monkeypatch.setattr("flanneld.io.etcd.EtcdRegistry", no_etcd)
    path = tmp_path / "net-conf.json"
    path.write_text('{"Network": "10.244.0.0/30"}')
    assert entry.main([f"--net-config-path={path}"]) == 2
    assert capsys.readouterr().err == (f"flanneld: error: {path}: invalid network config: "
                                       "Network 10.244.0.0/30 is too small; minimum useful "
                                       "network prefix is /28\n")
    monkeypatch.setenv("FLANNELD_NET_CONFIG_PATH", str(tmp_path / "missing.json"))
    assert entry.main([]) == 2
    assert "cannot read the network config file" in capsys.readouterr().err
