"""The encrypted udp mode's peers: one `core.session.Session` per peer public IP, kept in
step with the routes.

`Keyring.update` runs on the daemon's thread whenever the routes change: a peer whose
lease advertises the same keys keeps its session (and its counters and windows); a peer
with new keys (a restart, a rotated key pair) gets a fresh one; a peer whose lease has no
keys, or malformed ones, gets none, which is logged once per lease value and leaves it
without traffic either way (drop reason `no_key`). The new map is swapped in whole; the
data-plane thread alone seals and opens, so a session is only ever used by one thread.

A peer that comes back with the same keys (its lease expired and was made again) gets a
new session whose first send epoch lies above every epoch any earlier session of this
keyring used: the same keys never seal two datagrams under one nonce.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..core.errors import LeaseFormatError
from ..core.keys import Identity, PeerKeys, decode_backend_data
from ..core.routes import Routes
from ..core.sealing import Buffer
from ..core.session import Session

log = logging.getLogger("flanneld.udp")

DROP_NO_KEY = "no_key"   # to or from a peer whose lease has no usable key


@dataclass(frozen=True)
class Encryption:
    """What an encrypted backend needs: this node's keys, the AEAD, the network."""

    identity: Identity
    algorithm: str           # a name of core.sealing.ALGORITHMS
    network: str             # the network's CIDR text, bound into every key


class Keyring:
    def __init__(self, encryption: Encryption,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.encryption = encryption
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._refused: dict[str, str | None] = {}   # peer -> the lease value refused
        self._floor = 0    # above every send epoch a session of this keyring has used

    def update(self, routes: Routes) -> None:
        """Sessions for the peers in `routes` (daemon thread)."""
        enc, old, now = self.encryption, self._sessions, self.clock()
        wanted: dict[str, PeerKeys] = {}
        refused: dict[str, str | None] = {}
        for ip, data in routes.backend_data.items():
            try:
                wanted[ip] = _peer_keys(data)
            except LeaseFormatError as e:
                refused[ip] = data
                if self._refused.get(ip, "") != data:
                    log.warning("peer %s gets no traffic: %s", ip, e)
        kept = {ip: old[ip] for ip, keys in wanted.items()
                if ip in old and old[ip].peer == keys}
        self._retire(s for ip, s in old.items() if kept.get(ip) is not s)
        sessions = dict(kept)
        for ip, keys in wanted.items():
            if ip not in kept:
                sessions[ip] = Session(enc.identity, keys, enc.network, enc.algorithm, now,
                                       epoch=self._floor)
                if ip in old:
                    log.info("peer %s has new keys; new session", ip)
        self._sessions, self._refused = sessions, refused

    def _retire(self, sessions: Iterable[Session]) -> None:
        """Raise the floor above the epochs of `sessions` (+1: the data-plane thread may
        be moving one of them to its next epoch right now)."""
        for session in sessions:
            self._floor = max(self._floor, session.epoch + 2)

    @property
    def without_key(self) -> int:
        """How many peers get no traffic for want of a usable key."""
        return len(self._refused)

    def seal(self, packet: Buffer, ip: str) -> bytes | None:
        """The datagram for peer `ip`; None when it has no session."""
        session = self._sessions.get(ip)
        if session is None:
            return None
        return session.seal(packet, self.clock())

    def open(self, datagram: Buffer, ip: str) -> bytes | str:
        """The inner packet of a datagram from `ip`, or the drop reason."""
        session = self._sessions.get(ip)
        if session is None:
            return DROP_NO_KEY
        return session.open(datagram, self.clock())


def _peer_keys(data: str | None) -> PeerKeys:
    if data is None:
        raise LeaseFormatError("its lease advertises no key (is it running without "
                               "Backend.Encryption, or an older pyflannel or flannel?)")
    try:
        return decode_backend_data(json.loads(data))
    except ValueError as e:
        raise LeaseFormatError(f"its lease BackendData is not JSON: {e}") from None
