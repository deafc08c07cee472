"""flanneld.backends.udp_sealed.Keyring: sessions follow the routes; a peer without a
usable key gets none (logged once per lease value); a peer that comes back with the same
keys starts above every epoch used before, so no nonce is ever used twice."""

from __future__ import annotations

import logging
from ipaddress import IPv4Address, IPv4Network

from flanneld.backends.udp_sealed import DROP_NO_KEY, Encryption, Keyring
from flanneld.core.keys import Identity, PeerKeys, encode_backend_data
from flanneld.core.lease import Lease, backend_data_text
from flanneld.core.routes import Routes
from flanneld.core.session import Session

NETWORK = "10.244.0.0/16"
A, B = (Identity.from_private(bytes([i]) * 32, bytes([i]) * 16) for i in (1, 2))
B_IP = "192.168.1.2"


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def routes(data: str | None) -> Routes:
    return Routes.build([Lease(IPv4Network("10.244.2.0/24"), IPv4Address(B_IP), None, data)],
                        8285)


B_DATA = backend_data_text(encode_backend_data(B))


def test_a_peer_gets_a_session_that_survives_unrelated_updates() -> None:
    ring = Keyring(Encryption(A, "aes-256-gcm", NETWORK), Clock())
    ring.update(routes(B_DATA))
    sealed = ring.seal(b"\x45" + bytes(30), B_IP)
    assert sealed is not None
    peer = Session(B, PeerKeys(A.public, A.boot), NETWORK, "aes-256-gcm", 1000.0)
    assert peer.open(sealed, 1000.0) == b"\x45" + bytes(30)
    ring.update(routes(B_DATA))
    assert ring.seal(b"\x45" + bytes(30), B_IP)[4:12] == (1).to_bytes(8, "big")  # counter 1


def test_a_peer_without_a_usable_key_is_refused_and_logged_once(caplog) -> None:
    caplog.set_level(logging.WARNING)
    ring = Keyring(Encryption(A, "aes-256-gcm", NETWORK), Clock())
    for _ in range(3):
        ring.update(routes(None))
    assert ring.seal(b"x" * 40, B_IP) is None and ring.open(b"x" * 60, B_IP) == DROP_NO_KEY
    assert ring.without_key == 1 and len(caplog.records) == 1
    ring.update(routes('{"PublicKey": 1}'))
    assert len(caplog.records) == 2 and "PublicKey is not a string" in caplog.text
    ring.update(routes(B_DATA))
    assert ring.without_key == 0 and ring.seal(b"x" * 40, B_IP) is not None


def test_a_peer_back_with_the_same_keys_never_reuses_an_epoch() -> None:
    clock = Clock()
    ring = Keyring(Encryption(A, "aes-256-gcm", NETWORK), clock)
    seen: set[bytes] = set()
    for _ in range(4):
        ring.update(routes(B_DATA))
        for _ in range(3):
            sealed = ring.seal(b"\x45" + bytes(30), B_IP)
            assert sealed is not None and sealed[:12] not in seen   # (epoch, counter)
            seen.add(sealed[:12])
        ring.update(Routes.EMPTY)                 # the peer's lease went away
    assert len(seen) == 12
