"""One encrypted peer: the send key and its counter, the receive keys and their replay
windows, and the move from one key epoch to the next.

The sender numbers its datagrams 0, 1, 2, ... under its current epoch and moves to the
next epoch (counter 0 again, a new key) when `keys.due` says so: REKEY_AFTER_SECONDS after
the epoch began or after REKEY_AFTER_PACKETS datagrams, long before a 64-bit counter could
wrap. So no (key, nonce) pair is ever used twice. Both ends derive any epoch's keys from
the same inputs (`keys.derive`), so a rekey needs no message: the receiver derives the
next epoch's key when a datagram of it arrives, and once one authenticates it becomes the
current epoch; the previous one stays open for GRACE_SECONDS, for datagrams still in
flight. A datagram of an older epoch is refused unopened. A later epoch than the current
one is derived when its first datagram arrives (the epochs between may have carried only
lost datagrams); after a datagram of a new epoch failed to authenticate no new
epoch is derived for DERIVE_PAUSE seconds: a forger cannot make the receiver derive keys
(an X25519 exchange and HKDF, tens of microseconds) at will.

Each receive epoch has its own replay window: a counter is accepted once and only while
it is inside the window (`replay.ReplayWindow`), and only after the AEAD authenticated
the whole datagram, header included.

Pure: `now` comes in as an argument; nothing here reads a clock or does I/O.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag

from . import sealing
from .keys import GRACE_SECONDS, Identity, PeerKeys, derive, due
from .replay import ReplayWindow

# Why a received datagram was refused (the backend's drop reasons).
DROP_MALFORMED = "sealed_malformed"      # too short to hold a header, a tag and a packet
DROP_STALE_KEY = "sealed_stale_key"      # an epoch this receiver no longer (or not yet) opens
DROP_FORGED = "sealed_forged"            # the AEAD refused it: forged, altered, wrong key
DROP_REPLAYED = "sealed_replayed"        # its counter was seen, or is below the window
DROPS = (DROP_MALFORMED, DROP_STALE_KEY, DROP_FORGED, DROP_REPLAYED)
DERIVE_PAUSE = 0.1   # seconds without deriving a new epoch after one was forged


class _Receiver:
    """One receive epoch: its key and its window."""

    __slots__ = ("aead", "window")

    def __init__(self, aead: sealing.Aead) -> None:
        self.aead = aead
        self.window = ReplayWindow()


class Session:
    """The encrypted traffic between this node (`me`) and one peer in `network`."""

    def __init__(self, me: Identity, peer: PeerKeys, network: str, algorithm: str,
                 now: float, epoch: int = 0) -> None:
        """`epoch`: the first send epoch; above every epoch an earlier session between the
        same two (public key, boot value) pairs used, so that no nonce is used twice."""
        self.me, self.peer, self.network, self.algorithm = me, peer, network, algorithm
        self.epoch = epoch             # the send epoch
        self.counter = 0               # the next send counter under it
        self.started = now
        self._send = self._aead(epoch, send=True)
        self._current = -1             # the newest receive epoch that authenticated
        self._previous_until = 0.0     # the previous epoch opens until then
        self._receivers: dict[int, _Receiver] = {}
        self._derive_after = now       # no new epoch is derived before then

    def _aead(self, epoch: int, send: bool) -> sealing.Aead:
        send_key, receive_key = derive(self.me, self.peer, self.network, epoch)
        return sealing.aead(self.algorithm, send_key if send else receive_key)

    # -- sending

    def seal(self, packet: sealing.Buffer, now: float) -> bytes:
        """The datagram that carries `packet` to the peer."""
        if due(self.started, self.counter, now):
            self.rekey(now)
        counter = self.counter
        self.counter = counter + 1
        return sealing.seal(self._send, self.epoch, counter, packet)

    def rekey(self, now: float) -> None:
        """Move to the next send epoch now."""
        self.epoch += 1
        self.counter = 0
        self.started = now
        self._send = self._aead(self.epoch, send=True)

    # -- receiving

    def open(self, datagram: sealing.Buffer, now: float) -> bytes | str:
        """The inner packet of `datagram`, or why it was refused (one of DROPS)."""
        parsed = sealing.parse(datagram)
        if parsed is None:
            return DROP_MALFORMED
        epoch, counter = parsed
        receiver = self._receiver(epoch, now)
        if receiver is None:
            return DROP_STALE_KEY
        if not receiver.window.fresh(counter):
            return DROP_REPLAYED
        try:
            packet = sealing.open_(receiver.aead, datagram)
        except InvalidTag:
            if epoch > self._current:       # derived for a forgery: nothing is kept
                del self._receivers[epoch]
                self._derive_after = now + DERIVE_PAUSE
            return DROP_FORGED
        receiver.window.record(counter)
        if epoch > self._current:
            self._advance(epoch, now)
        return packet

    def _receiver(self, epoch: int, now: float) -> _Receiver | None:
        current = self._current
        if epoch == current or (epoch == current - 1 and now < self._previous_until):
            return self._receivers.get(epoch)
        if epoch > current:  # a later epoch (every datagram of one between may be lost)
            receiver = self._receivers.get(epoch)
            if receiver is None:
                if now < self._derive_after:
                    return None
                receiver = self._receivers[epoch] = _Receiver(self._aead(epoch, send=False))
            return receiver
        return None

    def _advance(self, epoch: int, now: float) -> None:
        """`epoch` authenticated: it is current; the one before stays open for a grace."""
        self._previous_until = now + GRACE_SECONDS if epoch == self._current + 1 else 0.0
        self._current = epoch
        for old in [e for e in self._receivers if e < epoch - 1]:
            del self._receivers[old]
