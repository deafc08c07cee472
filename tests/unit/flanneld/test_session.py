"""flanneld.core.session: two ends of an encrypted peering, fed datagrams and the time:
round trips, replays, reordering, rekeying by time and volume with a grace for the old
key, forgeries and stale epochs refused without deriving keys at will, and a restarted
receiver refusing what was captured before. A property test plays random sends,
duplicates, reorderings and losses against a model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flanneld.core import keys, session
from flanneld.core.keys import Identity, PeerKeys
from flanneld.core.session import (
    DROP_FORGED,
    DROP_MALFORMED,
    DROP_REPLAYED,
    DROP_STALE_KEY,
    Session,
)

NETWORK = "10.244.0.0/16"
T0 = 1000.0


def identity(seed: int, boot: int = 0) -> Identity:
    return Identity.from_private(bytes([seed]) * 32, bytes([boot]) * 16)


def peer(me: Identity) -> PeerKeys:
    return PeerKeys(me.public, me.boot)


A, B = identity(1), identity(2)


def pair(algorithm: str = "aes-256-gcm", now: float = T0) -> tuple[Session, Session]:
    return (Session(A, peer(B), NETWORK, algorithm, now),
            Session(B, peer(A), NETWORK, algorithm, now))


def packet(n: int) -> bytes:
    return bytes([0x45]) + n.to_bytes(4, "big") + bytes(40)


@pytest.mark.parametrize("algorithm", ["aes-256-gcm", "chacha20-poly1305"])
def test_a_packet_goes_through_once(algorithm: str) -> None:
    a, b = pair(algorithm)
    sealed = a.seal(packet(1), T0)
    assert len(sealed) == len(packet(1)) + 28
    assert b.open(sealed, T0) == packet(1)
    assert b.open(sealed, T0) == DROP_REPLAYED
    back = b.seal(packet(2), T0)
    assert a.open(back, T0) == packet(2)


def test_reordered_datagrams_are_taken_once_and_old_ones_refused() -> None:
    a, b = pair()
    sent = [a.seal(packet(i), T0) for i in range(3000)]
    assert b.open(sent[2999], T0) == packet(2999)
    assert b.open(sent[1000], T0) == packet(1000)        # inside the 2048 window
    assert b.open(sent[1000], T0) == DROP_REPLAYED
    assert b.open(sent[100], T0) == DROP_REPLAYED         # below the window: too old


def test_every_bit_flip_and_truncation_is_refused_and_changes_nothing() -> None:
    a, b = pair()
    sealed = bytearray(a.seal(packet(7), T0))
    for i in range(len(sealed) * 8):
        forged = bytearray(sealed)
        forged[i // 8] ^= 1 << (i % 8)
        assert b.open(forged, T0) in (DROP_FORGED, DROP_STALE_KEY)
    for n in range(len(sealed)):
        assert b.open(sealed[:n], T0) in (DROP_MALFORMED, DROP_FORGED, DROP_STALE_KEY)
    assert b.open(sealed, T0 + 1) == packet(7)           # the genuine one still opens


def test_a_datagram_for_someone_else_is_forged() -> None:
    a, _ = pair()
    c = Session(identity(3), peer(A), NETWORK, "aes-256-gcm", T0)
    assert c.open(a.seal(packet(1), T0), T0) == DROP_FORGED


def test_the_sender_rekeys_by_time_and_the_old_key_opens_for_a_grace() -> None:
    a, b = pair()
    late = a.seal(packet(1), T0)                          # epoch 0, delivered late
    assert b.open(a.seal(packet(2), T0), T0) == packet(2)
    later = T0 + keys.REKEY_AFTER_SECONDS
    fresh = a.seal(packet(3), later)
    assert a.epoch == 1 and a.counter == 1
    assert b.open(fresh, later) == packet(3)
    assert b.open(late, later + 1) == packet(1)           # inside the grace
    stale = a.seal(packet(4), later)                      # epoch 1 still
    assert b.open(stale, later) == packet(4)
    old = Session(A, peer(B), NETWORK, "aes-256-gcm", T0)  # another epoch-0 datagram
    old.counter = 50
    assert b.open(old.seal(packet(5), T0), later + keys.GRACE_SECONDS) == DROP_STALE_KEY


def test_the_sender_rekeys_by_volume(monkeypatch) -> None:
    monkeypatch.setattr(keys, "REKEY_AFTER_PACKETS", 10)
    a, b = pair()
    for i in range(25):
        assert b.open(a.seal(packet(i), T0), T0) == packet(i)
    assert a.epoch == 2 and a.counter == 5


def test_a_later_epoch_opens_and_forgeries_pause_derivation() -> None:
    a, b = pair()
    assert b.open(a.seal(packet(0), T0), T0) == packet(0)
    far = Session(A, peer(B), NETWORK, "aes-256-gcm", T0)
    far.epoch = 5
    far.rekey(T0)                      # epoch 6: the epochs between carried nothing it saw
    assert b.open(far.seal(packet(1), T0), T0) == packet(1)
    a, b = pair()
    assert b.open(a.seal(packet(0), T0), T0) == packet(0)
    forged = bytearray(Session(A, peer(B), NETWORK, "aes-256-gcm", T0).seal(packet(2), T0))
    forged[3] = 1                                         # claims epoch 1, the next one
    assert b.open(forged, T0) == DROP_FORGED
    a.rekey(T0)
    genuine = a.seal(packet(3), T0)                       # epoch 1 for real
    assert b.open(genuine, T0 + session.DERIVE_PAUSE / 2) == DROP_STALE_KEY
    assert b.open(genuine, T0 + session.DERIVE_PAUSE) == packet(3)


def test_a_restarted_receiver_refuses_what_was_captured_before() -> None:
    a, b = pair()
    captured = a.seal(packet(1), T0)
    assert b.open(captured, T0) == packet(1)
    restarted = identity(2, boot=9)                       # same key pair, new boot value
    b2 = Session(restarted, peer(A), NETWORK, "aes-256-gcm", T0 + 5)
    assert b2.open(captured, T0 + 5) == DROP_FORGED
    a2 = Session(A, peer(restarted), NETWORK, "aes-256-gcm", T0 + 5)  # A saw the new lease
    assert b2.open(a2.seal(packet(2), T0 + 6), T0 + 6) == packet(2)


def test_a_receiver_joins_a_sender_already_in_a_later_epoch() -> None:
    a, b = pair()
    for _ in range(3):
        a.rekey(T0)
    assert b.open(a.seal(packet(1), T0), T0) == packet(1)


steps = st.lists(st.one_of(
    st.tuples(st.just("send"), st.integers(1, 3)),
    st.tuples(st.just("deliver"), st.integers(0, 50)),      # an index into what was sent
    st.tuples(st.just("wait"), st.sampled_from([1.0, 30.0, 125.0]))), max_size=60)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_every_datagram_is_accepted_at_most_once_and_intact(script) -> None:
    a, b = pair()
    now = T0
    sent: list[tuple[bytes, bytes, float]] = []       # datagram, packet, when sent
    accepted: set[int] = set()
    for kind, arg in script:
        if kind == "send":
            for _ in range(arg):
                n = len(sent)
                sent.append((a.seal(packet(n), now), packet(n), now))
        elif kind == "wait":
            now += arg
        elif sent:
            i = arg % len(sent)
            got = b.open(sent[i][0], now)
            if isinstance(got, bytes):
                assert got == sent[i][1] and i not in accepted
                accepted.add(i)
            else:
                assert got in (DROP_REPLAYED, DROP_STALE_KEY)
                # a refusal of a fresh datagram only for age: an old epoch past its grace
                assert i in accepted or now - sent[i][2] >= keys.GRACE_SECONDS \
                    or got == DROP_REPLAYED
