"""The keys of encrypted udp traffic: a node's identity, what its lease advertises, the
keys per peer and direction, and when to move to a new key epoch.

Each node has an X25519 key pair and a random boot value drawn at every start; its lease
carries both (`encode_backend_data`). For a peer, both ends compute the same X25519 shared
secret and derive one key per direction with HKDF-SHA256, bound to the network, both
public keys, both boot values and the epoch. So A's send key is B's receive key, the two
directions never share a key (nor a nonce space), and a restarted receiver, whose new boot
value changes every key, cannot be fed datagrams captured before it restarted.

Pure: keys and boot values come in as bytes (the shell reads or draws them); nothing here
generates a key, reads the clock or draws a random number.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import ConfigError, LeaseFormatError

KEY_SIZE = 32   # an X25519 key, private or public, and a derived AEAD key
BOOT_SIZE = 16  # the per-start value each node publishes beside its public key
SALT = b"pyflannel udp v1"

REKEY_AFTER_SECONDS = 120.0   # a sender moves to the next epoch this long after starting one
REKEY_AFTER_PACKETS = 1 << 30  # ... or after this many datagrams, far below any counter limit
GRACE_SECONDS = 30.0  # a receiver keeps the previous epoch this long after a newer one opened

_FIELD_25519 = 2**255 - 19
# Any fixed scalar works: X25519 clamps it to a multiple of the cofactor 8, so its product
# with a point is zero exactly when the point has small order. Not a secret.
_PROBE = X25519PrivateKey.from_private_bytes(bytes(range(1, KEY_SIZE + 1)))


def public_key(private: bytes) -> bytes:
    """The raw X25519 public key of a raw 32-byte private key."""
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


@dataclass(frozen=True)
class Identity:
    """This node's key pair and boot value. The private key stays out of repr."""

    private: bytes = field(repr=False)
    public: bytes
    boot: bytes

    def __post_init__(self) -> None:
        if len(self.private) != KEY_SIZE:
            raise ConfigError(f"the private key is {len(self.private)} bytes, not {KEY_SIZE}")
        if len(self.boot) != BOOT_SIZE:
            raise ConfigError(f"the boot value is {len(self.boot)} bytes, not {BOOT_SIZE}")
        if self.public != public_key(self.private):
            raise ConfigError("the public key does not belong to the private key")

    @classmethod
    def from_private(cls, private: bytes, boot: bytes) -> Identity:
        """The identity of a raw private key and this start's boot value; ConfigError for
        wrong lengths."""
        if len(private) != KEY_SIZE:
            raise ConfigError(f"the private key is {len(private)} bytes, not {KEY_SIZE}")
        return cls(bytes(private), public_key(bytes(private)), bytes(boot))


@dataclass(frozen=True)
class PeerKeys:
    """What a peer's lease advertises: its public key and its current boot value."""

    public: bytes
    boot: bytes


def _info(network: str, sender: bytes, receiver: bytes, sender_boot: bytes,
          receiver_boot: bytes, epoch: int) -> bytes:
    # Every field after the network has a fixed length, so the joined string is unambiguous.
    return b"|".join((network.encode("ascii"), sender, receiver, sender_boot, receiver_boot,
                      epoch.to_bytes(4, "big")))


def _hkdf(shared: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=KEY_SIZE, salt=SALT, info=info).derive(shared)


def derive(me: Identity, peer: PeerKeys, network: str, epoch: int) -> tuple[bytes, bytes]:
    """(send key, receive key) between `me` and `peer` in `network` (its CIDR text, as
    "10.244.0.0/16") for key epoch `epoch` (0..2**32-1). ValueError when the peer's
    public key has small order (the shared secret would be zero, known to anyone) or the
    peer advertises this node's own public key and boot value."""
    if not 0 <= epoch < 2**32:
        raise ValueError(f"key epoch {epoch} is not a 32-bit unsigned integer")
    if len(peer.public) != KEY_SIZE or len(peer.boot) != BOOT_SIZE:
        raise ValueError(f"peer keys of {len(peer.public)} and {len(peer.boot)} bytes, "
                         f"not {KEY_SIZE} and {BOOT_SIZE}")
    if peer.public == me.public and peer.boot == me.boot:
        # Both directions would share one key, and this node would accept its own datagrams
        # reflected back to it.
        raise ValueError("peer keys are this node's own (its own lease?)")
    private = X25519PrivateKey.from_private_bytes(me.private)
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(peer.public))
    except ValueError:
        shared = bytes(KEY_SIZE)  # OpenSSL refuses an all-zero result itself
    if shared == bytes(KEY_SIZE):
        raise ValueError(f"peer public key {peer.public.hex()} has small order: "
                         "the shared secret would be zero")
    send = _hkdf(shared, _info(network, me.public, peer.public, me.boot, peer.boot, epoch))
    receive = _hkdf(shared, _info(network, peer.public, me.public, peer.boot, me.boot, epoch))
    return send, receive


def small_order(public: bytes) -> bool:
    """Whether an X25519 public key lies in the small subgroup (every shared secret with it
    is zero)."""
    try:
        return _PROBE.exchange(X25519PublicKey.from_public_bytes(public)) == bytes(KEY_SIZE)
    except ValueError:
        return True


def encode_backend_data(identity: Identity) -> dict[str, str]:
    """The lease's BackendData: the public key and boot value in standard base64, as
    flannel's wireguard backend publishes its PublicKey."""
    return {"PublicKey": base64.b64encode(identity.public).decode("ascii"),
            "Boot": base64.b64encode(identity.boot).decode("ascii")}


def _field(obj: dict[object, object], name: str, size: int) -> bytes:
    text = obj.get(name)
    if text is None:
        raise LeaseFormatError(f"lease BackendData has no {name}")
    if not isinstance(text, str):
        raise LeaseFormatError(f"lease BackendData {name} is not a string: {text!r:.80}")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise LeaseFormatError(f"lease BackendData {name} is not base64: {text!r:.80}") from None
    if len(raw) != size:
        raise LeaseFormatError(f"lease BackendData {name} is {len(raw)} bytes, not {size}")
    if base64.b64encode(raw).decode("ascii") != text:
        raise LeaseFormatError(f"lease BackendData {name} is not canonical base64: {text!r}")
    return raw


def decode_backend_data(obj: object) -> PeerKeys:
    """The PeerKeys of a lease's BackendData (decoded JSON); LeaseFormatError naming what
    is wrong when it is not what `encode_backend_data` writes, or the key is unusable
    (not a canonical curve coordinate, or of small order). Other members are ignored."""
    if not isinstance(obj, dict):
        raise LeaseFormatError(f"lease BackendData is not an object: {obj!r:.80}")
    public = _field(obj, "PublicKey", KEY_SIZE)
    boot = _field(obj, "Boot", BOOT_SIZE)
    if int.from_bytes(public, "little") >= _FIELD_25519:
        raise LeaseFormatError(f"lease PublicKey {public.hex()} is not a canonical X25519 key")
    if small_order(public):
        raise LeaseFormatError(f"lease PublicKey {public.hex()} has small order")
    return PeerKeys(public, boot)


def due(started: float, sent: int, now: float) -> bool:
    """Whether a sender whose current epoch began at `started` and has sent `sent`
    datagrams under it should move to the next epoch at `now`."""
    return now - started >= REKEY_AFTER_SECONDS or sent >= REKEY_AFTER_PACKETS
