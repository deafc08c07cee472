"""Test doubles for the daemon's seams, each checked against its protocol
(test_fakes.py): a registry that records and can fail or race, and a backend."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network

from flanneld.core.errors import EtcdUnavailable
from flanneld.core.lease import Lease
from flanneld.core.lease_watch import Sink
from flanneld.core.routes import Routes
from flanneld.io import memory


class MemoryRegistry(memory.MemoryRegistry):
    """The in-memory registry on a settable clock (`now`), recording each call's name in
    `calls`. `down` makes every call fail as if etcd were unreachable; `before_create`
    (and `before_create_config`) let a test slip in a racing node's create."""

    def __init__(self, now: float = 1000.0) -> None:
        super().__init__(clock=lambda: self.now)
        self.now = now
        self.down = False
        self.calls: list[str] = []
        self.before_create: Callable[[IPv4Network], None] | None = None
        self.before_create_config: Callable[[], None] | None = None

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            raise EtcdUnavailable(f"etcd unreachable during {name}")

    def get_network_config(self) -> str | None:
        self._call("get config")
        return super().get_network_config()

    def create_network_config(self, text: str) -> tuple[bool, str]:
        self._call("create config")
        if self.before_create_config is not None:
            self.before_create_config()
        return super().create_network_config(text)

    def list_leases(self) -> tuple[list[Lease], int]:
        self._call("list")
        return super().list_leases()

    def create_lease(self, subnet: IPv4Network, public_ip: IPv4Address,
                     ttl: int | None, backend_data: str | None = None) -> Lease:
        self._call("create")
        if self.before_create is not None:
            self.before_create(subnet)
        return super().create_lease(subnet, public_ip, ttl, backend_data)

    def renew_lease(self, subnet: IPv4Network, public_ip: IPv4Address,
                    ttl: int | None, backend_data: str | None = None) -> Lease:
        self._call("renew")
        return super().renew_lease(subnet, public_ip, ttl, backend_data)

    def delete_lease(self, subnet: IPv4Network) -> None:
        self._call("delete")
        super().delete_lease(subnet)

    def watch_leases(self, start_revision: int, sink: Sink) -> Callable[[], None]:
        self._call("watch")
        return super().watch_leases(start_revision, sink)


class FakeBackend:
    """A data plane that only remembers: the routes it was given, whether it runs, and a
    tun problem a test may set."""

    def __init__(self, mtu: int = 1472) -> None:
        self._mtu = mtu
        self.routes = Routes.EMPTY
        self.running = False
        self.problem: str | None = None
        self.offloads = {"tun_tso": True, "udp_gro": False}

    @property
    def mtu(self) -> int:
        return self._mtu

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False

    def set_routes(self, routes: Routes) -> None:
        self.routes = routes

    def alive(self) -> bool:
        return self.running

    def tun_problem(self) -> str | None:
        return self.problem

    def counters(self) -> dict[str, int]:
        return {"tun_recreated": 1}

    def gauges(self) -> dict[str, int]:
        return {f"udp_offload_{name}": int(on) for name, on in self.offloads.items()}
