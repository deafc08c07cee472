"""cni.io.files and cni.io.store on a real file system (a temporary directory): reads that
cannot block, writes that cannot be seen half-made, and the store over both."""

from __future__ import annotations

import os
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from cni.core import ipam
from cni.core.attachment import Record
from cni.core.netconf import Attachment
from cni.io import files
from cni.io.store import DiskStore

from .fakes import MemoryStore

A, B = Attachment("ctra", "eth0"), Attachment("ctrb", "eth0")


@pytest.mark.parametrize("kind", ["fifo", "directory", "/dev/zero"])
def test_reads_refuse_what_is_not_a_regular_file_without_blocking(kind: str,
                                                                   tmp_path: Path) -> None:
    path = tmp_path / "x"
    if kind == "fifo":
        os.mkfifo(path)           # opening it for reading would block without O_NONBLOCK
    elif kind == "directory":
        path.mkdir()
    else:
        path = Path(kind)
    with pytest.raises(files.NotRegular):
        files.read_bytes(str(path), 100)


def test_reads_stop_at_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"a" * 101)
    with pytest.raises(files.NotRegular, match="larger than 100 bytes"):
        files.read_bytes(str(path), 100)
    assert files.read_bytes(str(path), 101) == b"a" * 101


def test_create_is_exclusive_and_whole(tmp_path: Path) -> None:
    path = str(tmp_path / "10.0.0.2")
    assert files.create(path, b"first")
    assert not files.create(path, b"second")
    assert Path(path).read_bytes() == b"first"
    assert sorted(os.listdir(tmp_path)) == ["10.0.0.2"]      # no temporary left


def test_replace_and_sweep(tmp_path: Path) -> None:
    path = str(tmp_path / "record")
    files.replace(path, b"one")
    files.replace(path, b"two")
    assert Path(path).read_bytes() == b"two"
    (tmp_path / ".record.12345.tmp").write_text("torn")          # a killed writer's
    (tmp_path / ".hidden").write_text("someone else's")
    files.sweep(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == [".hidden", "record"]


@pytest.fixture(params=["memory", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "memory":
        yield MemoryStore()
    else:
        disk = DiskStore(str(tmp_path), "podnet")
        with disk.locked():
            yield disk


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
    store = DiskStore(str(tmp_path), "podnet")
    with store.locked():
        assert store.reserve(IPv4Address("10.0.0.2"), A)
        store.set_last_reserved(IPv4Address("10.0.0.2"))
    folder = tmp_path / "podnet"
    assert (folder / "10.0.0.2").read_bytes() == b"ctra\r\neth0"
    assert oct((folder / "10.0.0.2").stat().st_mode & 0o777) == "0o600"
    assert (folder / "last_reserved_ip.0").read_text() == "10.0.0.2"
    assert sorted(p.name for p in folder.iterdir()) == ["10.0.0.2", "attachments",
                                                        "last_reserved_ip.0", "lock"]


def test_locking_sweeps_what_a_killed_writer_left(tmp_path: Path) -> None:
    store = DiskStore(str(tmp_path), "podnet")
    with store.locked():
        pass
    (tmp_path / "podnet" / ".10.0.0.9.777.tmp").write_text("ctrx\r\neth0")
    (tmp_path / "podnet" / "attachments" / ".ctrx:eth0.777.tmp").write_text("{")
    with store.locked():
        assert store.reservations() == {} and store.all_records() == []
    assert sorted(p.name for p in (tmp_path / "podnet").rglob(".*")) == []


def test_long_names_and_ids_fit_and_records_name_their_owner(tmp_path: Path) -> None:
    network, owner = "n" * 400, Attachment("c" * 100_000, "eth0")
    store = DiskStore(str(tmp_path), network)
    record = Record(owner, "/run/netns/p", IPv4Interface("10.0.0.2/24"), "veth01234567", "cni0",
                    None)
    with store.locked():
        assert store.reserve(IPv4Address("10.0.0.2"), owner)
        store.write_record(record)
    assert store.read_record(owner) == record
    assert store.read_record(Attachment("c" * 100_000, "eth1")) is None
    assert store.reservations() == {IPv4Address("10.0.0.2"): owner}
    assert store.all_records() == [record]


def test_foreign_files_in_the_store_are_ignored_not_read_blocking(tmp_path: Path) -> None:
    store = DiskStore(str(tmp_path), "podnet")
    with store.locked():
        assert store.reserve(IPv4Address("10.0.0.2"), A)
    os.mkfifo(tmp_path / "podnet" / "10.0.0.3")
    os.mkfifo(tmp_path / "podnet" / "attachments" / "ctrb:eth0")
    assert store.reservations() == {IPv4Address("10.0.0.2"): A, IPv4Address("10.0.0.3"): None}
    assert store.read_record(B) is None and store.all_records() == []
