"""cni.io.store and cni.io.records on a real file system (a temporary directory): the
network's directory and its lock, the IP reservations in host-local's layout and the
attachment records, written with cni.io.files."""

from __future__ import annotations

import os
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from cni.core import ipam
from cni.core.attachment import Attachment, Record
from cni.io.records import RecordStore
from cni.io.store import IPStore, StateDir

from .fakes import MemoryStore

A, B = Attachment("ctra", "eth0"), Attachment("ctrb", "eth0")


@pytest.fixture(params=["memory", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "memory":
        yield MemoryStore()
    else:
        state = StateDir(str(tmp_path), "podnet")
        with state.locked():
            yield IPStore(state)


def test_the_disk_store_keeps_the_store_contract_of_the_fake(store) -> None:
    """The allocations the unit tests prove on MemoryStore hold on the disk store too."""
    subnet, gateway = IPv4Network("10.0.0.0/29"), IPv4Address("10.0.0.1")
    got = [ipam.allocate(store, subnet, gateway, Attachment(f"c{i}", "eth0")) for i in range(3)]
    assert got == [IPv4Address(f"10.0.0.{i}") for i in (2, 3, 4)]
    assert store.last_reserved() == IPv4Address("10.0.0.4")
    assert not store.reserve(IPv4Address("10.0.0.3"), A)
    assert ipam.release(store, Attachment("c1", "eth0")) == [IPv4Address("10.0.0.3")]
    assert store.reservations() == {IPv4Address("10.0.0.2"): Attachment("c0", "eth0"),
                                    IPv4Address("10.0.0.4"): Attachment("c2", "eth0")}


def test_disk_store_layout_is_host_locals(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path), "podnet")
    store = IPStore(state)
    with state.locked():
        assert store.reserve(IPv4Address("10.0.0.2"), A)
        store.set_last_reserved(IPv4Address("10.0.0.2"))
    folder = tmp_path / "podnet"
    assert (folder / "10.0.0.2").read_bytes() == b"ctra\r\neth0"
    assert oct((folder / "10.0.0.2").stat().st_mode & 0o777) == "0o600"
    assert (folder / "last_reserved_ip.0").read_text() == "10.0.0.2"
    assert sorted(p.name for p in folder.iterdir()) == ["10.0.0.2", "attachments",
                                                        "last_reserved_ip.0", "lock"]


def test_records_live_beside_the_reservations_under_the_same_lock(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path), "podnet")
    records = RecordStore(state)
    record = Record(A, "/run/netns/p", IPv4Interface("10.0.0.2/24"), "veth01234567", "cni0",
                    "PYFL-0123456789abcdef0123456")
    with state.locked():
        records.write(record)
    folder = tmp_path / "podnet"
    assert records.dir == str(folder / "attachments")
    assert records.path(A) == str(folder / "attachments" / "ctra:eth0")
    assert (folder / "attachments" / "ctra:eth0").read_text() == record.to_json()
    assert sorted(p.name for p in folder.rglob("*")) == ["attachments", "ctra:eth0", "lock"]
    with state.locked():
        records.remove(A)
        records.remove(A)           # already gone is fine
    assert records.read(A) is None and records.all() == []


def test_locking_sweeps_what_a_killed_writer_left(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path), "podnet")
    assert not state.exists()
    with state.locked():
        pass
    assert state.exists()
    (tmp_path / "podnet" / ".10.0.0.9.777.tmp").write_text("ctrx\r\neth0")
    (tmp_path / "podnet" / "attachments" / ".ctrx:eth0.777.tmp").write_text("{")
    with state.locked():
        assert IPStore(state).reservations() == {} and RecordStore(state).all() == []
    assert sorted(p.name for p in (tmp_path / "podnet").rglob(".*")) == []


def test_long_names_and_ids_fit_and_records_name_their_owner(tmp_path: Path) -> None:
    network, owner = "n" * 400, Attachment("c" * 100_000, "eth0")
    state = StateDir(str(tmp_path), network)
    store, records = IPStore(state), RecordStore(state)
    record = Record(owner, "/run/netns/p", IPv4Interface("10.0.0.2/24"), "veth01234567", "cni0",
                    None)
    with state.locked():
        assert store.reserve(IPv4Address("10.0.0.2"), owner)
        records.write(record)
    assert records.read(owner) == record
    assert records.read(Attachment("c" * 100_000, "eth1")) is None
    assert store.reservations() == {IPv4Address("10.0.0.2"): owner}
    assert records.all() == [record]


def test_foreign_files_in_the_store_are_ignored_not_read_blocking(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path), "podnet")
    store, records = IPStore(state), RecordStore(state)
    with state.locked():
        assert store.reserve(IPv4Address("10.0.0.2"), A)
    os.mkfifo(tmp_path / "podnet" / "10.0.0.3")
    os.mkfifo(tmp_path / "podnet" / "attachments" / "ctrb:eth0")
    assert store.reservations() == {IPv4Address("10.0.0.2"): A, IPv4Address("10.0.0.3"): None}
    assert records.read(B) is None and records.all() == []
