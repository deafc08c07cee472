"""flanneld.core.sealing: round trips under both algorithms, and every forgery, bit flip,
wrong key and truncation refused."""

from __future__ import annotations

import struct

import pytest
from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from hypothesis import given
from hypothesis import strategies as st

from flanneld.core import sealing
from flanneld.core.errors import ConfigError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
NAMES = sorted(sealing.ALGORITHMS)
# An IPv4 header of 20 bytes and a little payload: what the data path seals.
PACKET = bytes.fromhex("4500002c1c4640004011b1e60af40105") + bytes.fromhex("0af40207") \
    + b"inner payload, 24 bytes!"

# PACKET sealed under KEY as epoch 1, counter 2, computed once: the format must not drift.
VECTOR_AES = ("00000001000000000000000295a854d70703a2075fbc0270d9aecf9c05490b30ea8a71ea59e9"
              "29d2bd93540a335a7a360f4e6bcc54d8c50b6b95f109d074c65f46f1a0a808a33a76")
VECTOR_CHACHA = ("000000010000000000000002fc69fcd84eff594ff0bdba18c3160ff9f2f81358779d6868"
                 "7fcd95a777723f30ef10e27623825e159035d8e7936d88dbcd1a1e48c2e652df32842ea2")

packets = st.binary(min_size=20, max_size=1500)
epochs = st.integers(0, 2**32 - 1)
counters = st.integers(0, 2**64 - 1)


def flipped(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_the_format_constants() -> None:
    assert sealing.HEADER.size == 12 and sealing.HEADER.format == "!IQ"
    assert sealing.TAG == 16 and sealing.OVERHEAD == 28
    assert sealing.ALGORITHMS == {"chacha20-poly1305": ChaCha20Poly1305,
                                  "aes-256-gcm": AESGCM}


@given(epochs, counters)
def test_the_header_round_trips_big_endian(epoch: int, counter: int) -> None:
    head = sealing.header(epoch, counter)
    assert head == epoch.to_bytes(4, "big") + counter.to_bytes(8, "big")
    assert sealing.parse(head + bytes(16 + 20)) == (epoch, counter)


@pytest.mark.parametrize("bad", [(-1, 0), (2**32, 0), (0, -1), (0, 2**64)])
def test_the_header_refuses_values_out_of_range(bad: tuple[int, int]) -> None:
    with pytest.raises(struct.error):
        sealing.header(*bad)


@pytest.mark.parametrize("name", NAMES)
@given(packet=packets, epoch=epochs, counter=counters)
def test_seal_then_open_gives_the_packet_back(name: str, packet: bytes, epoch: int,
                                              counter: int) -> None:
    aead = sealing.aead(name, KEY)
    datagram = sealing.seal(aead, epoch, counter, packet)
    assert len(datagram) == len(packet) + sealing.OVERHEAD
    assert datagram[:12] == sealing.header(epoch, counter)
    assert sealing.parse(datagram) == (epoch, counter)
    assert sealing.open_(aead, datagram) == packet
    assert sealing.open_(aead, bytearray(datagram)) == packet
    assert sealing.open_(aead, memoryview(datagram)) == packet


@pytest.mark.parametrize("name", NAMES)
def test_the_ciphertext_is_the_aead_of_the_packet_with_the_header_as_nonce_and_data(
        name: str) -> None:
    """Pinned to the primitive: another implementation of the format can interoperate."""
    datagram = sealing.seal(sealing.aead(name, KEY), 7, 99, PACKET)
    head = struct.pack("!IQ", 7, 99)
    assert datagram == head + sealing.ALGORITHMS[name](KEY).encrypt(head, PACKET, head)
    assert PACKET not in datagram


@pytest.mark.parametrize("name", NAMES)
def test_a_known_datagram_opens(name: str) -> None:
    expected = {
        "aes-256-gcm": VECTOR_AES,
        "chacha20-poly1305": VECTOR_CHACHA,
    }[name]
    assert sealing.seal(sealing.aead(name, KEY), 1, 2, PACKET).hex() == expected
    assert sealing.open_(sealing.aead(name, KEY), bytes.fromhex(expected)) == PACKET


@pytest.mark.parametrize("name", NAMES)
def test_every_single_bit_flip_is_refused(name: str) -> None:
    """In the header, the ciphertext and the tag alike."""
    aead = sealing.aead(name, KEY)
    datagram = sealing.seal(aead, 3, 2**40 + 5, PACKET)
    for bit in range(len(datagram) * 8):
        with pytest.raises(InvalidTag):
            sealing.open_(aead, flipped(datagram, bit))


@pytest.mark.parametrize("name", NAMES)
@given(packet=packets, data=st.data())
def test_random_bit_flips_in_random_packets_are_refused(name: str, packet: bytes,
                                                        data: st.DataObject) -> None:
    aead = sealing.aead(name, KEY)
    datagram = sealing.seal(aead, 1, 1, packet)
    bits = data.draw(st.sets(st.integers(0, len(datagram) * 8 - 1), min_size=1, max_size=3))
    forged = datagram
    for bit in bits:
        forged = flipped(forged, bit)
    with pytest.raises(InvalidTag):
        sealing.open_(aead, forged)


@pytest.mark.parametrize("name", NAMES)
def test_another_key_or_another_algorithm_is_refused(name: str) -> None:
    datagram = sealing.seal(sealing.aead(name, KEY), 1, 1, PACKET)
    with pytest.raises(InvalidTag):
        sealing.open_(sealing.aead(name, OTHER_KEY), datagram)
    other = next(n for n in NAMES if n != name)
    with pytest.raises(InvalidTag):
        sealing.open_(sealing.aead(other, KEY), datagram)


@pytest.mark.parametrize("name", NAMES)
def test_a_header_moved_to_other_ciphertext_is_refused(name: str) -> None:
    """A valid header spliced onto another datagram's body, and an epoch or counter
    rewritten: the header is bound by the nonce and the associated data."""
    aead = sealing.aead(name, KEY)
    one = sealing.seal(aead, 1, 1, PACKET)
    two = sealing.seal(aead, 1, 2, PACKET)
    with pytest.raises(InvalidTag):
        sealing.open_(aead, one[:12] + two[12:])
    with pytest.raises(InvalidTag):
        sealing.open_(aead, sealing.header(2, 1) + one[12:])


@pytest.mark.parametrize("name", NAMES)
def test_every_truncation_is_refused(name: str) -> None:
    aead = sealing.aead(name, KEY)
    datagram = sealing.seal(aead, 1, 1, PACKET)
    for size in range(len(datagram)):
        cut = datagram[:size]
        if size < sealing.OVERHEAD + 20:
            assert sealing.parse(cut) is None
        else:
            assert sealing.parse(cut) == (1, 1)
        with pytest.raises(InvalidTag):
            sealing.open_(aead, cut)
    assert sealing.parse(datagram[:sealing.OVERHEAD + 20]) == (1, 1)


@pytest.mark.parametrize("name", NAMES)
@given(st.binary(max_size=200))
def test_random_bytes_never_open(name: str, junk: bytes) -> None:
    with pytest.raises(InvalidTag):
        sealing.open_(sealing.aead(name, KEY), junk)


def test_an_unknown_algorithm_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="'aes-128-cbc' is unknown.*aes-256-gcm"):
        sealing.aead("aes-128-cbc", KEY)


def test_an_algorithm_this_openssl_lacks_is_a_config_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class Missing:
        def __init__(self, key: bytes) -> None:
            raise UnsupportedAlgorithm("ChaCha20Poly1305 is not supported by this version")

    monkeypatch.setitem(sealing.ALGORITHMS, "chacha20-poly1305", Missing)
    with pytest.raises(ConfigError, match="'chacha20-poly1305' is not supported"):
        sealing.aead("chacha20-poly1305", KEY)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_a_key_of_another_length_is_refused(name: str, size: int) -> None:
    """AESGCM alone would take a 16-byte key as AES-128."""
    with pytest.raises(ValueError, match="32 bytes"):
        sealing.aead(name, bytes(size))

