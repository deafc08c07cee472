"""flanneld.backends: the registry and what the udp backend decides before any I/O.

The data plane itself runs against the kernel in tests/integration/test_udp_backend.py.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from flanneld.backends import IMPLEMENTATIONS, create
from flanneld.backends.udp import DROP_REASONS, OFFLOAD_COUNTERS, OFFLOADS, UdpBackend
from flanneld.core import packet
from flanneld.core.backend import KINDS, UDP
from flanneld.core.errors import ConfigError, FlannelError
from flanneld.core.lease import Lease
from flanneld.core.routes import Routes
from flanneld.io.tun import open_tun, valid_name

ARGS = dict(iface_addr=IPv4Address("192.168.1.1"), iface_mtu=1500, port=8285,
            network=IPv4Network("10.244.0.0/16"), subnet=IPv4Network("10.244.1.0/24"))


def test_every_kind_has_one_implementation_and_udp_is_known_by_name() -> None:
    assert set(IMPLEMENTATIONS) == set(KINDS.values())
    assert all(cls.kind is kind for kind, cls in IMPLEMENTATIONS.items())
    assert KINDS == {"udp": UDP} and IMPLEMENTATIONS == {UDP: UdpBackend}
    backend = create("udp", **ARGS)
    assert isinstance(backend, UdpBackend) and backend.tun_name == "flannel0"


def test_mtu_is_the_underlay_minus_28() -> None:
    assert UdpBackend(**ARGS).mtu == 1472 and UdpBackend.OVERHEAD == 28
    assert UdpBackend(**{**ARGS, "iface_mtu": 9001}).mtu == 8973
    assert UdpBackend(**{**ARGS, "iface_mtu": 96}).mtu == 68


@pytest.mark.parametrize(("change", "message"), [
    ({"iface_mtu": 95}, "underlay MTU 95 leaves less than 68 bytes"),
    ({"port": 0}, "port 0 is not in 1..65535"),
    ({"port": 65536}, "port 65536 is not in 1..65535"),
    ({"subnet": IPv4Network("10.245.1.0/24")}, "node subnet 10.245.1.0/24 is not inside"),
])
def test_bad_parameters_are_config_errors(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        UdpBackend(**{**ARGS, **change})


def test_before_start_nothing_runs_and_every_counter_is_zero() -> None:
    backend = UdpBackend(**ARGS)
    assert not backend.alive() and backend.tun_addr == IPv4Address("10.244.1.0")
    assert backend.tun_problem() is None
    counters = backend.counters()
    assert set(counters) == {f"drop_{r}" for r in DROP_REASONS} | {
        "tx_packets", "tx_bytes", "rx_packets", "rx_bytes", "icmp_sent_net_unreach",
        "icmp_sent_time_exceeded", "icmp_failed", "tun_recreated"} | set(OFFLOAD_COUNTERS)
    assert set(counters.values()) == {0}
    assert backend.offloads == dict.fromkeys(OFFLOADS, False)
    backend.stop()                      # stopping what never started is a no-op
    assert not backend.alive()


def test_drop_reasons_cover_the_packet_checks() -> None:
    checks = {v for k, v in vars(packet).items() if k.startswith("DROP_")}
    assert checks <= set(DROP_REASONS) and len(set(DROP_REASONS)) == len(DROP_REASONS)


def test_set_routes_swaps_the_snapshot() -> None:
    backend = UdpBackend(**ARGS)
    assert backend.routes is Routes.EMPTY
    routes = Routes.build([Lease(IPv4Network("10.244.2.0/24"), IPv4Address("192.168.1.2"))],
                          8285)
    backend.set_routes(routes)
    assert backend.routes is routes


@pytest.mark.parametrize(("name", "ok"), [
    ("flannel0", True), ("a", True), ("x" * 15, True), ("x" * 16, False), ("", False),
    (".", False), ("..", False), ("a/b", False), ("a:b", False), ("a b", False),
    ("flannel%d", False), ("tab\t", False),
])
def test_tun_names_follow_the_kernel_rule(name: str, ok: bool) -> None:
    assert valid_name(name.encode()) is ok


def test_open_tun_refuses_a_bad_name_before_any_io() -> None:
    with pytest.raises(FlannelError, match="cannot open tun device 'a/b': not a valid"):
        open_tun("a/b")
