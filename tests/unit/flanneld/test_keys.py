"""flanneld.core.keys: the primitives against their RFC vectors, derive against a fixed
vector and an HKDF written out with hmac, both ends agreeing, and every malformed lease."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from flanneld.core import keys
from flanneld.core.errors import ConfigError, LeaseFormatError
from flanneld.core.keys import Identity, PeerKeys

# RFC 7748 section 6.1.
ALICE_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_PRIVATE = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PUBLIC = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")

ALICE = Identity.from_private(ALICE_PRIVATE, bytes(range(16)))
BOB = Identity.from_private(BOB_PRIVATE, bytes(range(16, 32)))
NETWORK = "10.244.0.0/16"

# derive(ALICE, BOB's lease, NETWORK, 7), computed once.
ALICE_SEND_7 = "13f48b41feb7fb20f8f3d651c718d425d2623b974b19b75df307dc5210df39ef"
ALICE_RECEIVE_7 = "82756e4dc50449a4d15dd7b8a6044677b4574b575bc9680cd4c8f8c004ec9d6e"

# Points of small order on Curve25519 (u-coordinates, little-endian): 0, 1, the two of
# order 8, and p - 1.
SMALL_ORDER = [bytes.fromhex(h) for h in (
    "00" * 32,
    "01" + "00" * 31,
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ec" + "ff" * 30 + "7f",
)]
P = 2**255 - 19

# Each example does several scalar multiplications: on a loaded machine one may take longer
# than hypothesis's default deadline, which is a timing flake, not a finding.
CRYPTO = settings(deadline=None)

privates = st.binary(min_size=32, max_size=32)
boots = st.binary(min_size=16, max_size=16)
epochs = st.integers(0, 2**32 - 1)


def lease(identity: Identity) -> PeerKeys:
    return keys.decode_backend_data(keys.encode_backend_data(identity))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 written out with hmac: extract, then expand."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block = b"", b""
    for i in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
    return out[:length]


# --- the primitives ---------------------------------------------------------------------

def test_x25519_matches_rfc_7748() -> None:
    assert keys.public_key(ALICE_PRIVATE) == ALICE_PUBLIC
    assert keys.public_key(BOB_PRIVATE) == BOB_PUBLIC
    alice = X25519PrivateKey.from_private_bytes(ALICE_PRIVATE)
    bob = X25519PrivateKey.from_private_bytes(BOB_PRIVATE)
    assert alice.exchange(X25519PublicKey.from_public_bytes(BOB_PUBLIC)) == SHARED
    assert bob.exchange(X25519PublicKey.from_public_bytes(ALICE_PUBLIC)) == SHARED


def test_hkdf_sha256_matches_rfc_5869_case_1() -> None:
    ikm, salt = bytes([0x0B] * 22), bytes(range(13))
    info = bytes(range(0xF0, 0xFA))
    okm = bytes.fromhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c"
                        "5db02d56ecc4c5bf34007208d5b887185865")
    assert HKDF(algorithm=SHA256(), length=42, salt=salt, info=info).derive(ikm) == okm
    assert hkdf_sha256(ikm, salt, info, 42) == okm


# --- derive -----------------------------------------------------------------------------

def test_derive_gives_the_fixed_vector() -> None:
    send, receive = keys.derive(ALICE, lease(BOB), NETWORK, 7)
    assert (send.hex(), receive.hex()) == (ALICE_SEND_7, ALICE_RECEIVE_7)


def test_derive_is_hkdf_over_the_shared_secret_with_the_documented_info() -> None:
    def info(sender: Identity, receiver: Identity) -> bytes:
        return b"|".join((b"10.244.0.0/16", sender.public, receiver.public, sender.boot,
                          receiver.boot, (7).to_bytes(4, "big")))

    send, receive = keys.derive(ALICE, lease(BOB), NETWORK, 7)
    assert send == hkdf_sha256(SHARED, b"pyflannel udp v1", info(ALICE, BOB), 32)
    assert receive == hkdf_sha256(SHARED, b"pyflannel udp v1", info(BOB, ALICE), 32)


@CRYPTO
@given(privates, boots, privates, boots, epochs)
def test_each_send_key_is_the_other_ends_receive_key(a: bytes, a_boot: bytes, b: bytes,
                                                     b_boot: bytes, epoch: int) -> None:
    alice, bob = Identity.from_private(a, a_boot), Identity.from_private(b, b_boot)
    assume((alice.public, a_boot) != (bob.public, b_boot))
    a_send, a_receive = keys.derive(alice, lease(bob), NETWORK, epoch)
    b_send, b_receive = keys.derive(bob, lease(alice), NETWORK, epoch)
    assert (a_send, a_receive) == (b_receive, b_send)
    assert a_send != a_receive
    assert len(a_send) == len(a_receive) == 32


@CRYPTO
@given(st.sampled_from(["network", "epoch", "my boot", "peer boot", "peer public",
                        "my key"]), st.data())
def test_any_change_of_an_input_changes_both_keys(what: str, data: st.DataObject) -> None:
    network, epoch = "10.244.0.0/16", 5
    me, peer = ALICE, lease(BOB)
    before = keys.derive(me, peer, network, epoch)
    if what == "network":
        network = data.draw(st.sampled_from(["10.244.0.0/15", "10.245.0.0/16", "10.0.0.0/8"]))
    elif what == "epoch":
        epoch = data.draw(epochs.filter(lambda e: e != 5))
    elif what == "my boot":
        me = Identity.from_private(me.private, data.draw(boots.filter(lambda b: b != me.boot)))
    elif what == "peer boot":
        peer = PeerKeys(peer.public, data.draw(boots.filter(lambda b: b != peer.boot)))
    elif what == "peer public":
        other = data.draw(privates.filter(lambda p: keys.public_key(p) != BOB_PUBLIC))
        peer = PeerKeys(keys.public_key(other), peer.boot)
    else:
        me = Identity.from_private(data.draw(privates.filter(lambda p: p != ALICE_PRIVATE
                                                             and keys.public_key(p)
                                                             != ALICE_PUBLIC)), me.boot)
    after = keys.derive(me, peer, network, epoch)
    assert after[0] != before[0] and after[1] != before[1]
    assert set(after).isdisjoint(before)


def test_the_edge_epochs_are_accepted_and_beyond_them_refused() -> None:
    assert keys.derive(ALICE, lease(BOB), NETWORK, 0) != keys.derive(ALICE, lease(BOB),
                                                                     NETWORK, 2**32 - 1)
    for epoch in (-1, 2**32):
        with pytest.raises(ValueError, match="32-bit"):
            keys.derive(ALICE, lease(BOB), NETWORK, epoch)


@pytest.mark.parametrize("public", SMALL_ORDER, ids=lambda p: p.hex()[:8])
def test_derive_refuses_a_peer_key_of_small_order(public: bytes) -> None:
    with pytest.raises(ValueError, match="small order"):
        keys.derive(ALICE, PeerKeys(public, BOB.boot), NETWORK, 0)


def test_derive_refuses_a_peer_with_this_nodes_own_keys() -> None:
    """Both directions would share a key, and reflected datagrams would authenticate."""
    with pytest.raises(ValueError, match="this node's own"):
        keys.derive(ALICE, lease(ALICE), NETWORK, 0)


def test_the_same_key_pair_on_two_nodes_still_gives_two_directions() -> None:
    """A copied key file: the boot values still tell the ends apart."""
    twin = Identity.from_private(ALICE_PRIVATE, bytes(range(100, 116)))
    send, receive = keys.derive(ALICE, lease(twin), NETWORK, 0)
    assert send != receive
    assert keys.derive(twin, lease(ALICE), NETWORK, 0) == (receive, send)


def test_derive_refuses_peer_keys_of_the_wrong_length() -> None:
    for peer in (PeerKeys(BOB_PUBLIC[:31], BOB.boot), PeerKeys(BOB_PUBLIC, BOB.boot + b"x")):
        with pytest.raises(ValueError, match="bytes"):
            keys.derive(ALICE, peer, NETWORK, 0)


# --- the identity -----------------------------------------------------------------------

def test_an_identity_holds_its_public_key_and_keeps_the_private_one_out_of_repr() -> None:
    assert ALICE.public == ALICE_PUBLIC and ALICE.boot == bytes(range(16))
    assert ALICE_PRIVATE.hex() not in repr(ALICE) and repr(ALICE_PRIVATE) not in repr(ALICE)
    assert ALICE == Identity.from_private(bytes(ALICE_PRIVATE), bytes(range(16)))


@pytest.mark.parametrize(("private", "boot", "message"), [
    (ALICE_PRIVATE[:31], bytes(16), "private key is 31 bytes"),
    (ALICE_PRIVATE + b"\0", bytes(16), "private key is 33 bytes"),
    (b"", bytes(16), "private key is 0 bytes"),
    (ALICE_PRIVATE, bytes(15), "boot value is 15 bytes"),
    (ALICE_PRIVATE, bytes(17), "boot value is 17 bytes"),
])
def test_an_identity_of_wrong_lengths_is_a_config_error(private: bytes, boot: bytes,
                                                        message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Identity.from_private(private, boot)


def test_an_identity_whose_public_key_is_not_its_own_is_refused() -> None:
    with pytest.raises(ConfigError, match="does not belong"):
        Identity(ALICE_PRIVATE, BOB_PUBLIC, bytes(16))


# --- the lease's BackendData ------------------------------------------------------------

def test_backend_data_is_base64_of_the_public_key_and_boot_value() -> None:
    assert keys.encode_backend_data(ALICE) == {
        "PublicKey": "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=",
        "Boot": "AAECAwQFBgcICQoLDA0ODw==",
    }


@CRYPTO
@given(privates, boots)
def test_backend_data_round_trips(private: bytes, boot: bytes) -> None:
    identity = Identity.from_private(private, boot)
    assert lease(identity) == PeerKeys(identity.public, boot)


def test_other_members_of_backend_data_are_ignored() -> None:
    data: dict[str, Any] = {**keys.encode_backend_data(BOB), "VNI": 1, "Extra": None}
    assert keys.decode_backend_data(data) == PeerKeys(BOB_PUBLIC, BOB.boot)


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
GOOD = {"PublicKey": b64(BOB_PUBLIC), "Boot": b64(bytes(range(16)))}
MALFORMED: list[tuple[object, str]] = [
    (None, "not an object"),
    ("hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=", "not an object"),
    ([GOOD], "not an object"),
    ({}, "no PublicKey"),
    ({"Boot": GOOD["Boot"]}, "no PublicKey"),
    ({"PublicKey": GOOD["PublicKey"]}, "no Boot"),
    ({**GOOD, "PublicKey": None}, "no PublicKey"),
    ({**GOOD, "PublicKey": 5}, "PublicKey is not a string"),
    ({**GOOD, "PublicKey": list(BOB_PUBLIC)}, "PublicKey is not a string"),
    ({**GOOD, "Boot": b"\0" * 16}, "Boot is not a string"),
    ({**GOOD, "PublicKey": "not base64!"}, "PublicKey is not base64"),
    ({**GOOD, "PublicKey": GOOD["PublicKey"].rstrip("=")}, "PublicKey is not base64"),
    ({**GOOD, "PublicKey": " " + GOOD["PublicKey"]}, "PublicKey is not base64"),
    ({**GOOD, "PublicKey": GOOD["PublicKey"] + "\n"}, "PublicKey is not base64"),
    ({**GOOD, "PublicKey": "ä" * 44}, "PublicKey is not base64"),
    ({**GOOD, "PublicKey": base64.urlsafe_b64encode(b"\xfb" * 32).decode()},
     "PublicKey is not base64"),
    ({**GOOD, "Boot": "@@@@"}, "Boot is not base64"),
    ({**GOOD, "PublicKey": b64(BOB_PUBLIC[:31])}, "PublicKey is 31 bytes, not 32"),
    ({**GOOD, "PublicKey": b64(BOB_PUBLIC + b"\0")}, "PublicKey is 33 bytes, not 32"),
    ({**GOOD, "PublicKey": ""}, "PublicKey is 0 bytes"),
    ({**GOOD, "Boot": b64(bytes(15))}, "Boot is 15 bytes, not 16"),
    ({**GOOD, "Boot": b64(bytes(32))}, "Boot is 32 bytes, not 16"),
    # The last character carries bits that are not part of the key: a second spelling.
    ({**GOOD, "PublicKey": GOOD["PublicKey"][:-2] + B64[B64.index(GOOD["PublicKey"][-2]) ^ 1]
      + "="}, "not canonical base64"),
    ({**GOOD, "PublicKey": b64((P + 1).to_bytes(32, "little"))}, "not a canonical X25519"),
    ({**GOOD, "PublicKey": b64(bytes(31) + b"\x80")}, "not a canonical X25519"),
    ({**GOOD, "PublicKey": b64(BOB_PUBLIC[:31] + bytes([BOB_PUBLIC[31] | 0x80]))},
     "not a canonical X25519"),
    *(({**GOOD, "PublicKey": b64(p)}, "has small order") for p in SMALL_ORDER),
]


@pytest.mark.parametrize(("value", "message"), MALFORMED,
                         ids=[f"{i}-{m}" for i, (_, m) in enumerate(MALFORMED)])
def test_malformed_backend_data_is_a_lease_format_error_naming_the_fault(
        value: object, message: str) -> None:
    with pytest.raises(LeaseFormatError, match=message):
        keys.decode_backend_data(value)


def test_the_good_form_of_the_malformed_table_decodes() -> None:
    assert keys.decode_backend_data(GOOD) == PeerKeys(BOB_PUBLIC, bytes(range(16)))


@pytest.mark.parametrize("public", SMALL_ORDER, ids=lambda p: p.hex()[:8])
def test_small_order_tells_the_small_subgroup_from_real_keys(public: bytes) -> None:
    assert keys.small_order(public)
    assert not keys.small_order(ALICE_PUBLIC) and not keys.small_order(BOB_PUBLIC)


# --- when to rekey ----------------------------------------------------------------------

def test_the_rekey_policy_constants() -> None:
    assert keys.REKEY_AFTER_SECONDS == 120.0
    assert keys.REKEY_AFTER_PACKETS == 2**30
    assert keys.GRACE_SECONDS == 30.0
    assert keys.KEY_SIZE == 32 and keys.BOOT_SIZE == 16


@pytest.mark.parametrize(("started", "sent", "now", "due"), [
    (1000.0, 0, 1000.0, False),
    (1000.0, 0, 1119.9, False),
    (1000.0, 0, 1120.0, True),
    (1000.0, 0, 5000.0, True),
    (1000.0, 2**30 - 1, 1000.0, False),
    (1000.0, 2**30, 1000.0, True),
    (1000.0, 2**31, 1001.0, True),
])
def test_a_sender_rekeys_by_time_or_by_volume(started: float, sent: int, now: float,
                                              due: bool) -> None:
    assert keys.due(started, sent, now) is due


@given(st.floats(0, 1e9), st.integers(0, 2**31), st.floats(0, 1e4))
def test_due_is_monotonic_in_time_and_volume(started: float, sent: int, elapsed: float) -> None:
    now = started + elapsed
    if keys.due(started, sent, now):
        assert keys.due(started, sent + 1, now) and keys.due(started, sent, now + 1.0)
