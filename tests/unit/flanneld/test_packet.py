"""flanneld.core.packet against packets built from scratch, with a word-by-word checksum."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flanneld.core import packet as pk

UDP, TCP, ICMP = 17, 6, 1
A = int(IPv4Address("10.244.1.5"))
B = int(IPv4Address("10.244.2.7"))
TUN = int(IPv4Address("10.244.1.0"))


def ip(text: str) -> int:
    return int(IPv4Address(text))


def reference_checksum(data: bytes) -> int:
    """RFC 1071 the slow way: 16-bit words, end-around carry, complement."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build(src: int = A, dst: int = B, *, ttl: int = 64, proto: int = UDP, payload: bytes = b"",
          options: bytes = b"", tos: int = 0, ident: int = 0x1234, frag: int = 0x4000) -> bytes:
    """A valid IPv4 packet; `frag` is the flags + fragment offset word (default: DF)."""
    assert len(options) % 4 == 0 and len(options) <= 40
    ihl = 5 + len(options) // 4
    total = ihl * 4 + len(payload)
    header = struct.pack("!BBHHHBBHII", 0x40 | ihl, tos, total, ident, frag, ttl, proto, 0,
                         src, dst) + options
    check = reference_checksum(header)
    return header[:10] + check.to_bytes(2, "big") + header[12:] + payload


def with_byte(data: bytes, index: int, value: int) -> bytes:
    return data[:index] + bytes([value]) + data[index + 1:]


def icmp_message(icmp_type: int, code: int = 0) -> bytes:
    body = struct.pack("!BBHI", icmp_type, code, 0, 0x00010001) + b"ping"
    return body[:2] + reference_checksum(body).to_bytes(2, "big") + body[4:]


# Real-looking samples: a DNS query over UDP, a TCP SYN with options, an ICMP echo request,
# and the textbook header from Wikipedia's "IPv4 header checksum" article.
UDP_DNS = build(ip("10.244.1.5"), ip("10.96.0.10"), ttl=64, proto=UDP,
                payload=struct.pack("!HHHH", 53124, 53, 37, 0) + b"\x12\x34\x01\x00\x00\x01"
                + b"\0" * 6 + b"\x07example\x03com\0\0\x01\0\x01")
TCP_SYN = build(ip("10.244.2.9"), ip("10.244.1.5"), ttl=63, proto=TCP,
                options=b"\x94\x04\x00\x00",        # router alert
                payload=struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 0xA0, 0x02, 64240, 0, 0)
                + b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + b"\0" * 8 + b"\x01\x03\x03\x07")
ICMP_ECHO = build(ip("10.244.1.5"), ip("10.244.3.1"), ttl=1, proto=ICMP,
                  payload=icmp_message(8))
WIKIPEDIA = bytes.fromhex("450000730000400040 11 b861 c0a80001 c0a800c7".replace(" ", "")) \
    + bytes(0x73 - 20)
SAMPLES = {"udp-dns": UDP_DNS, "tcp-syn-options": TCP_SYN, "icmp-echo": ICMP_ECHO,
           "wikipedia": WIKIPEDIA}


# ------------------------------------------------------------------------ internet_checksum

def test_checksum_of_the_rfc1071_example() -> None:
    # RFC 1071 section 3: the words sum to 0xddf2, so the checksum is 0x220d.
    assert pk.internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_checksum_of_a_known_header_and_of_edge_inputs() -> None:
    header = WIKIPEDIA[:20]
    assert pk.internet_checksum(header[:10] + b"\0\0" + header[12:]) == 0xB861
    assert pk.internet_checksum(header) == 0
    assert pk.internet_checksum(b"") == 0xFFFF
    assert pk.internet_checksum(b"\0\0\0") == 0xFFFF
    assert pk.internet_checksum(b"\xff\xff") == 0           # -0 sums to 0xFFFF
    assert pk.internet_checksum(b"\x01") == 0xFEFF           # odd length: padded on the right


@given(st.binary(max_size=300))
def test_checksum_equals_the_word_by_word_sum(data: bytes) -> None:
    expected = reference_checksum(data)
    assert pk.internet_checksum(data) == expected
    assert pk.internet_checksum(bytearray(data)) == expected
    assert pk.internet_checksum(memoryview(data)) == expected


# ------------------------------------------------------------------------------ check_ipv4

@pytest.mark.parametrize("sample", SAMPLES.values(), ids=SAMPLES.keys())
def test_well_formed_samples_pass(sample: bytes) -> None:
    assert pk.check_ipv4(sample) is None
    assert pk.check_ipv4(bytearray(sample)) is None
    assert pk.check_ipv4(memoryview(sample)) is None


def test_addresses_read_from_the_header() -> None:
    assert pk.src_of(WIKIPEDIA) == ip("192.168.0.1")
    assert pk.dst_of(WIKIPEDIA) == ip("192.168.0.199")
    assert pk.src_of(memoryview(TCP_SYN)) == ip("10.244.2.9")
    assert pk.dst_of(bytearray(TCP_SYN)) == ip("10.244.1.5")


def _ihl(packet: bytes, ihl: int) -> bytes:
    return with_byte(packet, 0, 0x40 | ihl)


DROPS = {
    "empty": (b"", pk.DROP_TOO_SHORT),
    "19 bytes": (UDP_DNS[:19], pk.DROP_TOO_SHORT),
    "ipv6": (bytes.fromhex("6000000000083a40") + bytes(32), pk.DROP_NOT_IPV4),
    "version 5": (with_byte(UDP_DNS, 0, 0x55), pk.DROP_NOT_IPV4),
    "version 0": (bytes(40), pk.DROP_NOT_IPV4),
    "ihl 0": (_ihl(UDP_DNS, 0), pk.DROP_BAD_HEADER_LEN),
    "ihl 4": (_ihl(UDP_DNS, 4), pk.DROP_BAD_HEADER_LEN),
    "header longer than packet": (_ihl(build(payload=b"abcd"), 15), pk.DROP_BAD_HEADER_LEN),
    "truncated": (UDP_DNS[:-1], pk.DROP_BAD_TOTAL_LEN),
    "trailing bytes": (UDP_DNS + b"\0", pk.DROP_BAD_TOTAL_LEN),
    "total length 0": (build()[:2] + b"\0\0" + build()[4:], pk.DROP_BAD_TOTAL_LEN),
    "checksum off by one": (with_byte(UDP_DNS, 11, UDP_DNS[11] ^ 1), pk.DROP_BAD_CHECKSUM),
    "ttl changed, checksum not": (with_byte(UDP_DNS, 8, 63), pk.DROP_BAD_CHECKSUM),
    "option byte changed": (with_byte(TCP_SYN, 21, 5), pk.DROP_BAD_CHECKSUM),
}


@pytest.mark.parametrize(("data", "reason"), DROPS.values(), ids=DROPS.keys())
def test_each_drop_reason(data: bytes, reason: str) -> None:
    assert pk.check_ipv4(data) == reason
    assert pk.check_ipv4(bytearray(data)) == reason


def test_payload_is_not_checksummed() -> None:
    assert pk.check_ipv4(with_byte(UDP_DNS, len(UDP_DNS) - 1, 0xAA)) is None


def test_checksum_field_ffff_is_accepted_as_negative_zero() -> None:
    zero = _checksum_zero_packet(ttl=64)
    assert zero[10:12] == b"\0\0"
    assert pk.check_ipv4(zero) is None
    assert pk.check_ipv4(zero[:10] + b"\xff\xff" + zero[12:]) is None


REASONS = {None, pk.DROP_TOO_SHORT, pk.DROP_NOT_IPV4, pk.DROP_BAD_HEADER_LEN,
           pk.DROP_BAD_TOTAL_LEN, pk.DROP_BAD_CHECKSUM}


@given(st.binary(max_size=120))
def test_check_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    assert pk.check_ipv4(data) in REASONS
    assert pk.check_ipv4(memoryview(data)) in REASONS


@given(st.binary(min_size=4, max_size=80))
def test_check_never_raises_on_ipv4_looking_bytes(tail: bytes) -> None:
    # Version 4 and a matching total length get the fuzz past the cheap checks.
    data = bytes([0x40 | (tail[0] & 0x0F), tail[1]]) + (len(tail) + 2).to_bytes(2, "big") + tail[2:]
    assert pk.check_ipv4(data) in REASONS


def ipv4_packets(ttl: st.SearchStrategy[int] | None = None) -> st.SearchStrategy[bytes]:
    """Valid packets; pod addresses, common protocols and unfragmented packets are drawn often."""
    return st.builds(
        build,
        src=st.sampled_from([A, B]) | st.integers(0, 2**32 - 1),
        dst=st.sampled_from([A, B]) | st.integers(0, 2**32 - 1),
        ttl=st.integers(0, 255) if ttl is None else ttl,
        proto=st.sampled_from([ICMP, TCP, UDP]) | st.integers(0, 255),
        tos=st.integers(0, 255), ident=st.integers(0, 0xFFFF),
        frag=st.sampled_from([0, 0x4000, 0x2000]) | st.integers(0, 0xFFFF),
        payload=st.binary(max_size=64),
        options=st.integers(0, 10).flatmap(lambda words: st.binary(min_size=4 * words,
                                                                   max_size=4 * words)))


@given(ipv4_packets())
def test_every_built_packet_is_accepted(packet: bytes) -> None:
    assert pk.check_ipv4(packet) is None
    assert pk.check_ipv4(bytearray(packet)) is None
    assert pk.check_ipv4(memoryview(packet)) is None
    assert pk.src_of(packet) == struct.unpack_from("!I", packet, 12)[0]
    assert pk.dst_of(packet) == struct.unpack_from("!I", packet, 16)[0]


@given(ipv4_packets(), st.data())
def test_any_one_byte_change_in_the_header_is_rejected(packet: bytes, data: st.DataObject) -> None:
    hlen = (packet[0] & 0x0F) * 4
    index = data.draw(st.integers(0, hlen - 1), label="index")
    value = data.draw(st.integers(0, 255).filter(lambda v: v != packet[index]), label="value")
    assert pk.check_ipv4(with_byte(packet, index, value)) is not None


# ---------------------------------------------------------------------------- decrement_ttl

@pytest.mark.parametrize("name", ["udp-dns", "tcp-syn-options", "wikipedia"])
def test_decrement_ttl_on_samples_matches_a_full_recompute(name: str) -> None:
    original = SAMPLES[name]
    buf = bytearray(original)
    assert pk.decrement_ttl(buf) is True
    assert buf[8] == original[8] - 1
    hlen = (buf[0] & 0x0F) * 4
    recomputed = reference_checksum(bytes(buf[:10]) + b"\0\0" + bytes(buf[12:hlen]))
    assert int.from_bytes(buf[10:12], "big") == recomputed
    assert buf[:8] == original[:8] and buf[12:] == original[12:]
    assert pk.check_ipv4(buf) is None


def test_decrement_ttl_twice_equals_building_with_ttl_minus_two() -> None:
    buf = bytearray(UDP_DNS)
    assert pk.decrement_ttl(buf) and pk.decrement_ttl(buf)
    assert bytes(buf) == build(ip("10.244.1.5"), ip("10.96.0.10"), ttl=62, proto=UDP,
                               payload=UDP_DNS[20:])


def test_decrement_ttl_through_a_writable_memoryview() -> None:
    buf = bytearray(b"xx" + TCP_SYN)
    assert pk.decrement_ttl(memoryview(buf)[2:]) is True
    assert pk.check_ipv4(buf[2:]) is None and buf[2 + 8] == 62


@pytest.mark.parametrize("ttl", [0, 1])
def test_ttl_0_and_1_are_not_forwarded_and_not_modified(ttl: int) -> None:
    original = build(ttl=ttl, payload=b"hello")
    buf = bytearray(original)
    assert pk.decrement_ttl(buf) is False
    assert bytes(buf) == original


def test_ttl_2_becomes_1() -> None:
    buf = bytearray(build(ttl=2))
    assert pk.decrement_ttl(buf) is True
    assert bytes(buf) == build(ttl=1)


def _checksum_zero_packet(ttl: int) -> bytes:
    """A packet whose correct checksum is 0x0000: put ~sum(other words) into the ID field."""
    probe = build(ttl=ttl, ident=0)
    return build(ttl=ttl, ident=int.from_bytes(probe[10:12], "big"))


def test_decrement_ttl_gives_0000_where_flannels_c_gives_ffff() -> None:
    # After the decrement the correct checksum is 0x0000. Flannel's C, check += 0x0100
    # (RFC 1141), gives 0xFFFF here: it verifies, but it is not what a recompute gives.
    after = _checksum_zero_packet(ttl=9)
    before = bytearray(build(ttl=10, ident=int.from_bytes(after[4:6], "big")))
    rfc1141 = int.from_bytes(before[10:12], "big") + 0x0100
    assert (rfc1141 & 0xFFFF) + (rfc1141 >> 16) == 0xFFFF
    assert pk.decrement_ttl(before) is True
    assert bytes(before) == after and after[10:12] == b"\0\0"


@given(ipv4_packets(ttl=st.integers(2, 255)))
def test_decrement_ttl_equals_a_full_recompute(packet: bytes) -> None:
    buf = bytearray(packet)
    assert pk.decrement_ttl(buf) is True
    hlen = (packet[0] & 0x0F) * 4
    expected = with_byte(packet, 8, packet[8] - 1)
    check = reference_checksum(expected[:10] + b"\0\0" + expected[12:hlen])
    assert bytes(buf) == expected[:10] + check.to_bytes(2, "big") + expected[12:]


@given(ipv4_packets(ttl=st.integers(0, 1)))
def test_decrement_ttl_refuses_ttl_0_and_1(packet: bytes) -> None:
    buf = bytearray(packet)
    assert pk.decrement_ttl(buf) is False
    assert bytes(buf) == packet


# ------------------------------------------------------------------------------- icmp_error

def parse_icmp_error(reply: bytes) -> tuple[bytes, bytes]:
    """Check the envelope every ICMP error shares; return (IP header, ICMP message)."""
    assert pk.check_ipv4(reply) is None
    assert reply[0] == 0x45 and reply[8] == 64 and reply[9] == ICMP
    assert reply[6:8] == b"\0\0"                                 # no flags, first fragment
    icmp = reply[20:]
    assert pk.internet_checksum(icmp) == 0
    assert reference_checksum(icmp) == 0
    assert icmp[4:8] == b"\0\0\0\0"
    return reply[:20], icmp


@pytest.mark.parametrize(("type_", "code"), [(pk.ICMP_DEST_UNREACH, pk.CODE_NET_UNREACH),
                                             (pk.ICMP_TIME_EXCEEDED, pk.CODE_TTL_EXCEEDED)])
def test_icmp_error_about_a_udp_packet(type_: int, code: int) -> None:
    reply = pk.icmp_error(UDP_DNS, type_, code, TUN)
    assert reply is not None
    header, icmp = parse_icmp_error(reply)
    assert pk.src_of(header) == TUN and pk.dst_of(header) == ip("10.244.1.5")
    assert len(reply) == 20 + 8 + 20 + 8
    assert icmp[0] == type_ and icmp[1] == code
    assert icmp[8:] == UDP_DNS[:28]                              # header + the UDP header


def test_icmp_error_quotes_ip_options() -> None:
    reply = pk.icmp_error(TCP_SYN, pk.ICMP_DEST_UNREACH, pk.CODE_NET_UNREACH, TUN)
    assert reply is not None
    _, icmp = parse_icmp_error(reply)
    assert icmp[8:] == TCP_SYN[:24 + 8]
    assert pk.dst_of(reply) == ip("10.244.2.9")


@pytest.mark.parametrize("payload_len", [0, 3, 8])
def test_icmp_error_quotes_a_short_payload_whole(payload_len: int) -> None:
    offender = build(proto=UDP, payload=b"\x01" * payload_len)
    reply = pk.icmp_error(offender, pk.ICMP_DEST_UNREACH, pk.CODE_NET_UNREACH, TUN)
    assert reply is not None
    _, icmp = parse_icmp_error(reply)
    assert icmp[8:] == offender


def test_icmp_error_accepts_bytearray_and_memoryview() -> None:
    expected = pk.icmp_error(UDP_DNS, pk.ICMP_TIME_EXCEEDED, 0, TUN)
    assert pk.icmp_error(bytearray(UDP_DNS), pk.ICMP_TIME_EXCEEDED, 0, TUN) == expected
    assert pk.icmp_error(memoryview(UDP_DNS), pk.ICMP_TIME_EXCEEDED, 0, TUN) == expected
    assert isinstance(expected, bytes)


@pytest.mark.parametrize("icmp_type", [0, 8, 13, 14])
def test_icmp_queries_get_errors(icmp_type: int) -> None:
    offender = build(proto=ICMP, payload=icmp_message(icmp_type))
    assert pk.icmp_error(offender, pk.ICMP_DEST_UNREACH, 0, TUN) is not None


FORBIDDEN = {
    **{f"icmp type {t}": build(proto=ICMP, payload=icmp_message(t)) for t in (3, 4, 5, 11, 12)},
    "icmp without a type byte": build(proto=ICMP),
    "fragment offset 1": build(frag=0x0001, payload=b"12345678"),
    "fragment offset 1 with MF": build(frag=0x2001, payload=b"12345678"),
    "last fragment offset": build(frag=0x1FFF, payload=b"12345678"),
    "source 0.0.0.0": build(src=0),
    "source 0.1.2.3": build(src=ip("0.1.2.3")),
    "source loopback": build(src=ip("127.0.0.1")),
    "source multicast": build(src=ip("224.0.0.5")),
    "source class E": build(src=ip("240.0.0.1")),
    "source broadcast": build(src=ip("255.255.255.255")),
    "destination multicast": build(dst=ip("224.0.0.251")),
    "destination multicast top": build(dst=ip("239.255.255.250")),
    "destination class E": build(dst=ip("250.1.1.1")),
    "destination broadcast": build(dst=ip("255.255.255.255")),
    "malformed: bad checksum": with_byte(UDP_DNS, 11, UDP_DNS[11] ^ 0xFF),
    "malformed: truncated": UDP_DNS[:-2],
    "malformed: too short": b"\x45\0",
}


@pytest.mark.parametrize("offender", FORBIDDEN.values(), ids=FORBIDDEN.keys())
@pytest.mark.parametrize("type_", [pk.ICMP_DEST_UNREACH, pk.ICMP_TIME_EXCEEDED])
def test_no_icmp_error_where_the_rfcs_forbid_one(offender: bytes, type_: int) -> None:
    assert pk.icmp_error(offender, type_, 0, TUN) is None


def test_first_fragment_with_more_fragments_gets_an_error() -> None:
    offender = build(frag=0x2000, payload=b"12345678abc")
    assert pk.icmp_error(offender, pk.ICMP_DEST_UNREACH, 0, TUN) is not None


@pytest.mark.parametrize(("type_", "code"), [(0, 0), (8, 0), (3, 256), (11, -1)])
def test_icmp_error_rejects_non_error_types(type_: int, code: int) -> None:
    with pytest.raises(ValueError, match="not an error"):
        pk.icmp_error(UDP_DNS, type_, code, TUN)


def forbidden(packet: bytes) -> bool:
    """The rules, restated independently of the module."""
    src, dst = IPv4Address(pk.src_of(packet)), IPv4Address(pk.dst_of(packet))
    hlen = (packet[0] & 0x0F) * 4
    icmp_error_in = packet[9] == ICMP and (len(packet) == hlen or packet[hlen] in {3, 4, 5, 11, 12})
    return (int.from_bytes(packet[6:8], "big") & 0x1FFF != 0 or icmp_error_in
            or src.packed[0] == 0 or src.is_loopback or src.is_multicast or src.is_reserved
            or src == IPv4Address("255.255.255.255")
            or dst.is_multicast or dst.is_reserved or dst == IPv4Address("255.255.255.255"))


@given(ipv4_packets(), st.sampled_from([3, 11]), st.integers(0, 15), st.integers(1, 2**32 - 1))
def test_icmp_error_property(offender: bytes, type_: int, code: int, src: int) -> None:
    reply = pk.icmp_error(offender, type_, code, src)
    if forbidden(offender):
        assert reply is None
        return
    assert reply is not None
    header, icmp = parse_icmp_error(reply)
    hlen = (offender[0] & 0x0F) * 4
    assert pk.src_of(header) == src and pk.dst_of(header) == pk.src_of(offender)
    assert (icmp[0], icmp[1]) == (type_, code)
    assert icmp[8:] == offender[:hlen + 8]


# ---------------------------------------------------------------------------- accept_ipv4

NODE_MASK, NODE_NET = 0xFFFFFF00, ip("10.244.2.0")


def test_accept_decrements_the_ttl_of_a_packet_for_this_node() -> None:
    original = build(A, B, ttl=9, payload=b"data")
    buf = bytearray(original)
    assert pk.accept_ipv4(buf, NODE_MASK, NODE_NET) is None
    expected = bytearray(original)
    assert pk.decrement_ttl(expected) and buf == expected


@pytest.mark.parametrize("packet, reason", [
    (build(A, A, payload=b"x"), pk.DROP_NOT_LOCAL),            # for another node
    (build(A, B, ttl=1), pk.DROP_TTL_EXCEEDED),
    (build(A, B, ttl=0), pk.DROP_TTL_EXCEEDED),
    (with_byte(build(A, B), 10, 0), pk.DROP_BAD_CHECKSUM),
    (b"\x45" * 10, pk.DROP_TOO_SHORT),
])
def test_accept_refuses_and_leaves_the_packet_as_it_was(packet: bytes, reason: str) -> None:
    buf = bytearray(packet)
    assert pk.accept_ipv4(buf, NODE_MASK, NODE_NET) == reason
    assert bytes(buf) == packet


@given(st.binary(max_size=80))
def test_accept_never_raises(data: bytes) -> None:
    buf = bytearray(data)
    reason = pk.accept_ipv4(buf, 0, 0)
    assert reason is None or bytes(buf) == data
