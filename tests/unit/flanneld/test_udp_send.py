"""The udp backend's train sender against a fake socket checked against its protocol: GSO
sends within the kernel's limits, the per-peer fallback when a route refuses GSO, and
what is counted when sends fail."""

from __future__ import annotations

import errno
from collections.abc import Sequence

import pytest

from flanneld.backends.udp import COUNTERS
from flanneld.backends.udp_send import Sendmsg, Sockaddr, TrainSender
from flanneld.io import udp_offload

PEER, OTHER = ("192.168.1.2", 8285), ("192.168.1.3", 8285)


class FakeSocket:
    """Records each sendmsg as (buffers joined, segment size or None, address); raises
    `refuse` for GSO sends and `fail` for the calls whose numbers are in `fail_calls`."""

    def __init__(self, refuse: int | None = None, fail: int | None = None,
                 fail_calls: frozenset[int] = frozenset()) -> None:
        self.sent: list[tuple[bytes, int | None, Sockaddr]] = []
        self.refuse, self.fail, self.fail_calls = refuse, fail, fail_calls
        self.calls = 0

    def sendmsg(self, buffers: Sequence, ancdata: Sequence = (), flags: int = 0,
                address: Sockaddr = ("", 0), /) -> int:
        self.calls += 1
        size = None
        for level, kind, data in ancdata:
            assert (level, kind) == (udp_offload.SOL_UDP, udp_offload.UDP_SEGMENT)
            size = int.from_bytes(data, "little")
        if size is not None and self.refuse is not None:
            raise OSError(self.refuse, "refused")
        if self.calls in self.fail_calls:
            raise OSError(self.fail, "failed")
        data = b"".join(bytes(b) for b in buffers)
        self.sent.append((data, size, address))
        return len(data)


_: Sendmsg = FakeSocket()


def train(sizes: list[int], per: int = 1) -> list[bytes]:
    parts = []
    for i, n in enumerate(sizes):
        if per == 2:
            parts += [bytes([i]) * 20, bytes([i]) * (n - 20)]
        else:
            parts.append(bytes([i]) * n)
    return parts


def sender(sock: FakeSocket, gso: bool = True) -> tuple[TrainSender, dict[str, int]]:
    counts = dict.fromkeys(COUNTERS, 0)
    return TrainSender(sock, counts, gso), counts


def test_a_train_leaves_in_one_gso_send() -> None:
    sock = FakeSocket()
    s, c = sender(sock)
    s.send(train([1000] * 5 + [300], per=2), 2, 1000, 5300, PEER)
    assert [(len(d), size, to) for d, size, to in sock.sent] == [(5300, 1000, PEER)]
    assert (c["tx_packets"], c["tx_bytes"], c["tx_gso_sends"]) == (6, 5300, 1)


def test_a_long_train_is_split_at_the_kernels_limits() -> None:
    sock = FakeSocket()
    s, c = sender(sock)
    s.send(train([1472] * 100), 1, 1472, 1472 * 100, PEER)
    per_send = min(udp_offload.MAX_SEGMENTS, udp_offload.MAX_GSO_BYTES // 1472)
    assert [len(d) // 1472 for d, _, _ in sock.sent] == [per_send, per_send, 100 - 2 * per_send]
    assert all(len(d) <= udp_offload.MAX_GSO_BYTES for d, _, _ in sock.sent)
    assert c["tx_packets"] == 100 and c["tx_gso_sends"] == 3


@pytest.mark.parametrize("gso", [True, False])
def test_one_packet_or_no_gso_means_plain_sends(gso: bool) -> None:
    sock = FakeSocket()
    s, c = sender(sock, gso=gso)
    s.send(train([700]), 1, 700, 700, PEER)
    s.send(train([700, 700]), 1, 700, 1400, PEER)
    expect = [None, 700] if gso else [None, None, None]
    assert [size for _, size, _ in sock.sent] == expect
    assert c["tx_packets"] == 3 and c["tx_bytes"] == 2100


@pytest.mark.parametrize("why", [errno.EIO, errno.EINVAL])
def test_a_route_that_refuses_gso_gets_packets_one_by_one_from_then_on(
        why: int, caplog: pytest.LogCaptureFixture) -> None:
    sock = FakeSocket(refuse=why)
    s, c = sender(sock)
    s.send(train([1000] * 3), 1, 1000, 3000, PEER)
    s.send(train([1000] * 2), 1, 1000, 2000, PEER)
    assert [(len(d), size) for d, size, _ in sock.sent] == [(1000, None)] * 5
    assert sock.calls == 6                    # one refused GSO send, then one per packet
    assert (c["tx_packets"], c["tx_bytes"], c["tx_gso_fallbacks"]) == (5, 5000, 1)
    assert c["drop_send_error"] == 0 and s.refused == {PEER}
    assert caplog.text.count("UDP GSO to 192.168.1.2:8285 refused") == 1
    sock.refuse = None
    s.send(train([1000] * 2), 1, 1000, 2000, OTHER)      # another peer still gets GSO
    assert sock.sent[-1][1:] == (1000, OTHER)


def test_a_failed_send_is_counted_as_a_drop_not_a_refusal() -> None:
    sock = FakeSocket(fail=errno.ENOBUFS, fail_calls=frozenset({1}))
    s, c = sender(sock)
    s.send(train([1000] * 3), 1, 1000, 3000, PEER)
    assert c["drop_send_error"] == 3 and c["tx_gso_fallbacks"] == 0 and not s.refused
    s.send(train([1000] * 2), 1, 1000, 2000, PEER)
    assert c["tx_packets"] == 2 and c["tx_gso_sends"] == 1


def test_a_failure_after_a_first_gso_send_counts_what_went() -> None:
    sock = FakeSocket(fail=errno.EIO, fail_calls=frozenset({2}))
    s, c = sender(sock)
    s.send(train([1472] * 60), 1, 1472, 1472 * 60, PEER)
    first = min(udp_offload.MAX_SEGMENTS, udp_offload.MAX_GSO_BYTES // 1472)
    assert c["tx_packets"] == first and c["drop_send_error"] == 60 - first
    assert not s.refused


def test_per_packet_send_failures_are_counted_one_by_one() -> None:
    sock = FakeSocket(fail=errno.ENETUNREACH, fail_calls=frozenset({2}))
    s, c = sender(sock, gso=False)
    s.send(train([100, 100, 50], per=1), 1, 100, 250, PEER)
    assert c["tx_packets"] == 2 and c["tx_bytes"] == 150 and c["drop_send_error"] == 1
