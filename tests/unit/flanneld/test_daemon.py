"""flanneld.daemon, the shell around the control core, run for real against the in-memory
registry and a fake backend (the decisions themselves are test_control.py's): start-up,
routes from the listing and the watch, its own lease re-created, the subnet file written
again (also when a FIFO took its place), health and metrics, a clean stop, and the fatal
exits."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from flanneld.core import keys
from flanneld.core.config import parse as parse_config
from flanneld.core.errors import ConfigError, LeaseLost
from flanneld.core.subnet_file import render
from flanneld.daemon import Daemon
from flanneld.network_config import ConfigFile
from flanneld.options import parse

from .fakes import FakeBackend, MemoryRegistry

ME, PEER, THIRD = (IPv4Address(f"192.168.1.{i}") for i in (10, 20, 30))
OWN, OTHER, NEW = (IPv4Network(f"10.244.{i}.0/24") for i in (1, 2, 3))
CONFIG = '{"Network": "10.244.0.0/16"}'
WRITTEN = render(IPv4Network("10.244.0.0/16"), OWN, 1472, False)


def eventually(check: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {check}")
        time.sleep(0.02)


class Running:
    """A daemon's run() on a thread: its result or exception once it ends."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.result: int | BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.daemon.run()
        except BaseException as e:  # noqa: BLE001 (handed to the test)
            self.result = e

    def stop(self) -> int | BaseException | None:
        self.daemon.request_stop()
        self.thread.join(10)
        assert not self.thread.is_alive()
        return self.result


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., tuple[Running, FakeBackend]]]:
    started: list[Running] = []

    def start(registry: MemoryRegistry, *flags: str, config_file: ConfigFile | None = None
              ) -> tuple[Running, FakeBackend]:
        backend = FakeBackend()
        opts = parse(["--iface=lo", f"--public-ip={ME}", "--iptables-forward-rules=false",
                      "--subnet-lease-ttl=60", f"--subnet-file={tmp_path}/subnet.env",
                      "--cni-socket=",
                      *flags], {})
        daemon = Daemon(opts, registry, config_file=config_file,
                        make_backend=lambda *args, **kw: backend)
        started.append(Running(daemon))
        return started[-1], backend

    yield start
    for running in started:
        running.stop()


def registry_with_peer() -> MemoryRegistry:
    registry = MemoryRegistry(now=time.monotonic())
    registry.config = CONFIG
    registry.renew_lease(OTHER, PEER, 3600)
    registry.renew_lease(OWN, ME, 3600)  # the lease it held before, reused
    return registry


def test_a_daemon_runs_follows_etcd_keeps_its_subnet_file_and_stops(start, tmp_path) -> None:
    registry = registry_with_peer()
    running, backend = start(registry)
    subnet_file = tmp_path / "subnet.env"
    eventually(lambda: subnet_file.exists() and backend.routes.peers == {str(PEER)})
    assert subnet_file.read_text() == WRITTEN and backend.running
    daemon = running.daemon
    assert daemon.health() is None and daemon.peer_list() == [
        {"subnet": str(OTHER), "public_ip": str(PEER)}]

    registry.now = time.monotonic()
    registry.create_lease(NEW, THIRD, 3600)                   # the watch brings it
    eventually(lambda: backend.routes.peers == {str(PEER), str(THIRD)})
    registry.delete_lease(OTHER)
    eventually(lambda: backend.routes.peers == {str(THIRD)})
    registry.delete_lease(OWN)                                # re-created from the watch
    eventually(lambda: OWN in registry.leases and registry.leases[OWN].public_ip == ME)

    subnet_file.unlink()
    os.mkfifo(subnet_file)        # opened plainly, reading it would wait forever
    eventually(lambda: subnet_file.is_file() and subnet_file.read_text() == WRITTEN)

    gone = "tun device flannel0 is gone; re-creating it: cannot open tun device flannel0: x"
    backend.problem = gone
    assert daemon.health() == gone
    lines = daemon.metrics().splitlines()
    assert "flanneld_tun_up 0" in lines and "flanneld_udp_tun_recreated_total 1" in lines
    assert "flanneld_udp_offload_tun_tso 1" in lines and "flanneld_peers 1" in lines
    assert running.stop() == 0 and not backend.running
    assert registry.leases[OWN].public_ip == ME               # a stop keeps the lease


def test_the_daemon_starts_from_the_config_file_without_waiting(start, tmp_path) -> None:
    registry = MemoryRegistry(now=time.monotonic())
    file = ConfigFile("/etc/kube-pyflannel/net-conf.json", CONFIG, parse_config(CONFIG))
    start(registry, config_file=file)
    eventually(lambda: (tmp_path / "subnet.env").exists())
    assert registry.config == CONFIG and registry.calls[:2] == ["get config", "create config"]


def test_etcd_away_at_start_is_waited_for(start, tmp_path) -> None:
    registry = registry_with_peer()
    registry.down = True
    _, backend = start(registry)
    time.sleep(0.5)
    assert not backend.running and registry.calls.count("get config") >= 2
    registry.down = False
    eventually(lambda: (tmp_path / "subnet.env").exists() and backend.running)


def test_its_subnet_taken_by_another_node_ends_the_run_with_lease_lost(start) -> None:
    registry = registry_with_peer()
    running, backend = start(registry)
    eventually(lambda: backend.routes.peers == {str(PEER)})
    registry.now = time.monotonic()
    registry.renew_lease(OWN, THIRD, 3600)
    running.thread.join(5)
    assert isinstance(running.result, LeaseLost) and not backend.running
    assert "now belongs to 192.168.1.30" in str(running.result)


def test_a_stop_while_waiting_for_the_config_exits_cleanly(start) -> None:
    running, backend = start(MemoryRegistry(now=time.monotonic()))
    time.sleep(0.2)
    assert running.stop() == 0 and not backend.running
    assert running.daemon.control.lease is None



def test_an_encrypted_network_advertises_the_key_and_keeps_it_across_restarts(
        start, tmp_path) -> None:
    registry = MemoryRegistry(now=time.monotonic())
    registry.config = ('{"Network": "10.244.0.0/16", '
                       '"Backend": {"Type": "udp", "Encryption": "aes-256-gcm"}}')
    key_file = tmp_path / "keys" / "udp.key"
    advertised = []
    for _ in range(2):
        running, backend = start(registry, f"--udp-key-file={key_file}")
        eventually(lambda b=backend: b.running)
        assert running.stop() == 0
        (lease,) = registry.leases.values()
        assert lease.backend_data is not None
        advertised.append(json.loads(lease.backend_data))
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    first, second = advertised
    assert first["PublicKey"] == second["PublicKey"]   # the key file is kept
    assert first["Boot"] != second["Boot"]             # a new boot value per start
    public = base64.b64decode(first["PublicKey"])
    assert public == keys.public_key(base64.b64decode(key_file.read_text()))


def test_a_key_file_that_cannot_be_used_stops_the_start_before_any_lease(start,
                                                                         tmp_path) -> None:
    registry = MemoryRegistry(now=time.monotonic())
    registry.config = '{"Network": "10.244.0.0/16", "Backend": {"Type": "udp", "Encryption": true}}'
    key_file = tmp_path / "udp.key"
    key_file.write_text("not a key\n")
    key_file.chmod(0o600)
    running, backend = start(registry, f"--udp-key-file={key_file}")
    running.thread.join(5)
    assert isinstance(running.result, ConfigError) and "does not hold" in str(running.result)
    assert registry.leases == {} and not backend.running
