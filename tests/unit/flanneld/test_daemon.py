"""flanneld.daemon's watch handling, driven with an in-memory registry, a fake backend and
a fake clock: re-listing after a compaction, backoff while etcd is away (forwarding to the
last known peers), its own lease deleted (re-created) or taken (LeaseLost); health and
metrics while the tun device is gone; the subnet file written again when it vanishes."""

from __future__ import annotations

import logging
import os
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from flanneld.core.errors import LeaseLost
from flanneld.core.lease import Lease
from flanneld.core.lease_watch import Delete, LeaseTable, Put
from flanneld.core.routes import Routes
from flanneld.core.subnet_file import render
from flanneld.daemon import BACKOFF_MAX, BACKOFF_MIN, LIVENESS_CHECK, Daemon
from flanneld.io.etcd import WatchBatch, WatchBroken
from flanneld.options import parse

from .fakes import MemoryRegistry

ME, PEER = IPv4Address("192.168.1.10"), IPv4Address("192.168.1.20")
OWN, OTHER = IPv4Network("10.244.1.0/24"), IPv4Network("10.244.2.0/24")


class FakeBackend:
    def __init__(self) -> None:
        self.routes = Routes.EMPTY
        self.problem: str | None = None
        self.offloads = {"tun_tso": True, "udp_gro": False}

    def set_routes(self, routes: Routes) -> None:
        self.routes = routes

    def alive(self) -> bool:
        return True

    def tun_problem(self) -> str | None:
        return self.problem

    def counters(self) -> dict[str, int]:
        return {"tun_recreated": 1}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def daemon(tmp_path: Path) -> Daemon:
    reg = MemoryRegistry()
    reg.leases[OWN] = Lease(OWN, ME, 2000.0)
    reg.leases[OTHER] = Lease(OTHER, PEER, 2000.0)
    d = Daemon(parse(["--subnet-lease-ttl=60", f"--subnet-file={tmp_path}/subnet.env"], {}),
               reg, clock=Clock())
    d.lease, d.port, d.table = reg.leases[OWN], 8285, LeaseTable(OWN)
    d.backend = FakeBackend()
    d.deadlines["watch"] = 0.0
    d._due_watch()
    return d


def delivered(d: Daemon) -> list:
    """What the watch sink put on the queue, tagged with its generation."""
    out = []
    while not d.events.empty():
        out.append(d.events.get())
    return out


def test_the_first_listing_routes_to_peers_and_watches_from_the_next_revision(daemon) -> None:
    reg = daemon.registry
    assert daemon.backend.routes.peers == {str(PEER)}
    assert reg.watches[-1][0] == reg.revision + 1 and "watch" not in daemon.deadlines


def test_watch_batches_change_the_routes(daemon) -> None:
    third = Lease(IPv4Network("10.244.3.0/24"), IPv4Address("192.168.1.30"), 3000.0)
    daemon._on_batch(WatchBatch((Put(third), Delete(OTHER)), 9))
    assert daemon.backend.routes.peers == {"192.168.1.30"}
    assert daemon.backend.routes.lookup(int(IPv4Address("10.244.3.7"))) == ("192.168.1.30", 8285)


def test_a_compacted_watch_relists_at_once(daemon) -> None:
    reg = daemon.registry
    reg.leases.pop(OTHER)  # changed while the watch was behind
    daemon._on_broken(WatchBroken(compacted=True, reason="compacted at 7"))
    assert daemon.deadlines["watch"] <= daemon.clock()
    daemon._due_watch()
    assert daemon.backend.routes.peers == frozenset() and len(reg.watches) == 2


def test_etcd_away_keeps_the_last_peers_and_backs_off(daemon) -> None:
    reg = daemon.registry
    sink = reg.watches[-1][1]
    sink(WatchBroken(compacted=False, reason="connection reset"))
    [(gen, message)] = delivered(daemon)
    assert gen == daemon.watch_gen
    daemon._on_broken(message)
    reg.down = True
    delays = []
    for _ in range(8):
        daemon.clock.now = daemon.deadlines["watch"]
        before = daemon.clock.now
        daemon._due_watch()
        delays.append(daemon.deadlines["watch"] - before)
    assert delays[0] == pytest.approx(BACKOFF_MIN * 2) and delays[-1] == BACKOFF_MAX
    assert daemon.backend.routes.peers == {str(PEER)} and not daemon.etcd_ok
    reg.down = False
    daemon._due_watch()
    assert daemon.etcd_ok and daemon.backoff == BACKOFF_MIN and "watch" not in daemon.deadlines


def test_messages_from_a_cancelled_watch_are_ignored(daemon) -> None:
    old_sink = daemon.registry.watches[-1][1]
    daemon.deadlines["watch"] = daemon.clock()
    daemon._due_watch()  # a new watch; the old one is cancelled
    old_sink(WatchBatch((Delete(OTHER),), 99))
    [(gen, _)] = delivered(daemon)
    assert gen != daemon.watch_gen


def test_own_lease_deleted_is_recreated(daemon) -> None:
    reg = daemon.registry
    reg.leases.pop(OWN)
    daemon._on_batch(WatchBatch((Delete(OWN),), 10))
    assert reg.leases[OWN].public_ip == ME and daemon.lease.expiration == 1000.0 + 60
    assert daemon.deadlines["renew"] == 1000.0 + 60 - 30  # short TTL: renew at half-life


def test_own_lease_missing_from_a_listing_is_recreated(daemon) -> None:
    reg = daemon.registry
    reg.leases.pop(OWN)
    daemon.deadlines["watch"] = daemon.clock()
    daemon._due_watch()
    assert reg.leases[OWN].public_ip == ME


def test_own_subnet_taken_by_another_node_is_fatal(daemon) -> None:
    with pytest.raises(LeaseLost, match="now belongs to 192.168.1.20"):
        daemon._on_batch(WatchBatch((Put(Lease(OWN, PEER, 5000.0)),), 11))


def test_recreating_while_etcd_is_away_waits_for_the_relist(daemon) -> None:
    reg = daemon.registry
    reg.leases.pop(OWN)
    reg.down = True
    daemon._on_batch(WatchBatch((Delete(OWN),), 12))
    assert "watch" in daemon.deadlines and not daemon.etcd_ok
    reg.down = False
    daemon.clock.now = daemon.deadlines["watch"]
    daemon._due_watch()
    assert reg.leases[OWN].public_ip == ME and daemon.etcd_ok


def test_health(daemon) -> None:
    assert daemon.health() is None
    daemon.clock.now = 2000.0
    assert "has expired" in daemon.health()


def test_health_names_a_lost_tun_device_and_metrics_say_it_is_down(daemon) -> None:
    gone = "tun device flannel0 is gone; re-creating it: cannot open tun device flannel0: x"
    assert "flanneld_tun_up 1" in daemon.metrics().splitlines()
    daemon.backend.problem = gone
    assert daemon.health() == gone
    lines = daemon.metrics().splitlines()
    assert "flanneld_tun_up 0" in lines and "flanneld_udp_tun_recreated_total 1" in lines
    daemon.backend.problem = None
    assert daemon.health() is None


def test_metrics_say_which_offloads_are_on(daemon) -> None:
    lines = daemon.metrics().splitlines()
    assert "flanneld_udp_offload_tun_tso 1" in lines
    assert "flanneld_udp_offload_udp_gro 0" in lines


WRITTEN = render(IPv4Network("10.244.0.0/16"), OWN, 1472, False)


@pytest.fixture
def written(daemon) -> Path:
    """The subnet file as run() leaves it."""
    path = Path(daemon.opts.subnet_file)
    daemon.subnet_text = WRITTEN
    path.write_text(WRITTEN)
    return path


def test_the_liveness_check_rewrites_a_deleted_subnet_file(daemon, written, caplog) -> None:
    written.unlink()
    daemon._due_liveness()
    assert written.read_text() == WRITTEN
    assert f"the subnet file {written} was missing; wrote it again" in caplog.text
    assert daemon.deadlines["liveness"] == daemon.clock() + LIVENESS_CHECK


@pytest.mark.parametrize("edit", [lambda t: t.replace("1472", "1400"),
                                  lambda t: t.replace("\n", "\r\n"), lambda t: ""])
def test_a_changed_subnet_file_is_written_back(daemon, written, caplog, edit) -> None:
    written.write_bytes(edit(WRITTEN).encode())
    daemon._due_liveness()
    assert written.read_bytes() == WRITTEN.encode()
    assert "had been changed; wrote it again" in caplog.text


def test_a_fifo_in_place_of_the_subnet_file_neither_stalls_the_loop_nor_stays(
        daemon, written, caplog) -> None:
    written.unlink()
    os.mkfifo(written)                 # opened plainly, reading it would wait forever
    daemon._due_liveness()
    assert written.read_bytes() == WRITTEN.encode()
    assert "had been changed; wrote it again" in caplog.text


def test_an_intact_subnet_file_is_left_alone(daemon, written, caplog) -> None:
    before = os.stat(written)
    daemon._due_liveness()
    after = os.stat(written)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert caplog.text == ""


def test_a_subnet_file_that_cannot_be_written_is_logged_once(daemon, written, caplog) -> None:
    written.unlink()
    written.mkdir()                      # a directory in its place: even root cannot read it
    caplog.set_level(logging.ERROR)
    daemon._due_liveness()
    daemon._due_liveness()
    errors = [r for r in caplog.records if "cannot check or write the subnet file" in r.message]
    assert len(errors) == 1 and "Is a directory; trying again every 1 s" in errors[0].message
    written.rmdir()
    daemon._due_liveness()
    assert written.read_text() == WRITTEN and daemon.subnet_file_error is None
