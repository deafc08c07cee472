"""The offload header logic: one's complement sums, TSO segmentation, checksum completion,
GRO coalescing, and the virtio-net header; against packets built from scratch and checked
with the word-by-word checksum of test_packet."""

from __future__ import annotations

import struct
from collections import namedtuple

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from flanneld.core import gro, gso, vnet
from flanneld.core.packet import check_ipv4, finish_checksum, ones_sum

from .test_packet import build, reference_checksum

SRC, DST = 0x0AF40102, 0x0AF40207
Header = namedtuple("Header", "flags gso_type hdr_len gso_size csum_start csum_offset")


def parse(buf: bytes) -> Header:
    """A virtio-net header, by field."""
    return Header(*vnet.unpack_from(buf))
ACK, PSH, FIN, SYN, RST, URG, ECE, CWR = 0x10, 0x08, 0x01, 0x02, 0x04, 0x20, 0x40, 0x80
TIMESTAMPS = b"\x01\x01\x08\x0a" + struct.pack("!II", 0x01020304, 0x0A0B0C0D)
SACK = b"\x01\x01\x05\x0a" + struct.pack("!II", 1000, 2000)


def tcp_segment(payload: bytes, *, seq: int = 1000, ack: int = 77, flags: int = ACK,
                options: bytes = b"", window: int = 500, ident: int = 0x100, frag: int = 0x4000,
                ttl: int = 64, tos: int = 0, sport: int = 40000, dport: int = 5201,
                checksum: bool = True) -> bytes:
    """A TCP/IPv4 packet with valid IP and (unless `checksum` is False) TCP checksums."""
    thl = 20 + len(options)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (thl // 4) << 4, flags, window, 0,
                      0) + options + payload
    if checksum:
        pseudo = struct.pack("!IIBBH", SRC, DST, 0, 6, len(tcp))
        tcp = tcp[:16] + reference_checksum(pseudo + tcp).to_bytes(2, "big") + tcp[18:]
    return build(SRC, DST, ttl=ttl, proto=6, payload=tcp, ident=ident, frag=frag, tos=tos)


def super_packet(payload: bytes, **kw) -> memoryview:
    """What an offloading TUN hands over: the TCP checksum field holds the pseudo-header sum
    (here: garbage, to show it is not read)."""
    pkt = bytearray(tcp_segment(payload, checksum=False, **kw))
    pkt[36:38] = b"\xde\xad"
    return memoryview(pkt)


def tcp_checksum_ok(pkt: bytes) -> bool:
    ihl = (pkt[0] & 0x0F) * 4
    pseudo = struct.pack("!IIBBH", SRC, DST, 0, 6, len(pkt) - ihl)
    return reference_checksum(pseudo + pkt[ihl:]) == 0


def wire_packets(parts: list, size: int) -> list[bytes]:
    """The datagrams a GSO send of `parts` with segment size `size` becomes."""
    data = b"".join(bytes(p) for p in parts)
    return [data[i:i + size] for i in range(0, len(data), size)]


# --- sums -----------------------------------------------------------------------------

@given(st.binary(max_size=3000))
def test_ones_sum_matches_the_word_by_word_sum(data: bytes) -> None:
    assert finish_checksum(ones_sum(data)) in (reference_checksum(data), 0xFFFF)
    assert (ones_sum(data) + reference_checksum(data)) % 0xFFFF == 0


@given(st.binary(max_size=500).filter(lambda b: len(b) % 2 == 0), st.binary(max_size=500))
def test_ones_sums_add(a: bytes, b: bytes) -> None:
    assert ones_sum(a + b) == (ones_sum(a) + ones_sum(b)) % 0xFFFF


def test_finish_checksum_never_gives_zero() -> None:
    assert finish_checksum(0) == 0xFFFF
    assert finish_checksum(0xFFFF) == 0xFFFF
    assert finish_checksum(1) == 0xFFFE


# --- segmentation -----------------------------------------------------------------------

payloads = st.integers(1, 9000).flatmap(lambda n: st.binary(min_size=n, max_size=n))
options = st.sampled_from([b"", TIMESTAMPS, SACK + TIMESTAMPS])
flag_sets = st.sampled_from([ACK, ACK | PSH, ACK | PSH | FIN, ACK | CWR, ACK | ECE | PSH])


@settings(max_examples=200, deadline=None)
@given(payloads, st.integers(1, 1460), options, flag_sets, st.integers(0, 2**32 - 1),
       st.integers(0, 0xFFFF), st.sampled_from([0x4000, 0]))
def test_every_segment_is_a_valid_packet_no_larger_than_asked(
        payload: bytes, mss: int, opts: bytes, flags: int, seq: int, ident: int,
        frag: int) -> None:
    sp = super_packet(payload, options=opts, flags=flags, seq=seq, ident=ident, frag=frag)
    parts, size = gso.segment_tcp4(sp, mss)
    hl = 40 + len(opts)
    assert size == hl + mss
    wire = wire_packets(parts, size)
    assert len(wire) == -(-len(payload) // mss)
    assert b"".join(w[hl:] for w in wire) == payload
    for i, w in enumerate(wire):
        last = i == len(wire) - 1
        assert check_ipv4(w) is None
        assert tcp_checksum_ok(w)
        assert len(w) == size or last
        assert w[:2] == sp[:2] and w[6:10] == sp[6:10] and w[12:20] == sp[12:20]
        assert struct.unpack_from("!H", w, 4)[0] == (ident + i) & 0xFFFF
        assert struct.unpack_from("!I", w, 24)[0] == (seq + i * mss) & 0xFFFFFFFF
        assert w[28:33] == sp[28:33] and w[34:36] == sp[34:36] and w[40:hl] == sp[40:hl]
        expect = flags if last else flags & ~(FIN | PSH)
        assert w[33] == (expect if i == 0 else expect & ~CWR)


def test_a_super_packet_of_one_segment_gets_its_checksum() -> None:
    sp = super_packet(b"x" * 100, options=TIMESTAMPS)
    parts, _ = gso.segment_tcp4(sp, 1420)
    (w,) = wire_packets(parts, 10_000)
    assert w == tcp_segment(b"x" * 100, options=TIMESTAMPS)


def test_segments_are_views_of_the_payload_not_copies() -> None:
    sp = super_packet(b"a" * 3000)
    parts, _ = gso.segment_tcp4(sp, 1000)
    assert all(isinstance(p, memoryview) for p in parts[1::2])


@pytest.mark.parametrize("bad, why", [
    (build(SRC, DST, proto=17, payload=b"u" * 40), "not a TCP/IPv4"),
    (b"\x60" + bytes(59), "not a TCP/IPv4"),
    (bytes(30), "not a TCP/IPv4"),
])
def test_what_is_not_tcp_ipv4_is_refused(bad: bytes, why: str) -> None:
    with pytest.raises(gso.SegmentError, match=why):
        gso.segment_tcp4(memoryview(bytearray(bad)), 1000)


def test_a_tcp_header_longer_than_the_packet_is_refused() -> None:
    pkt = bytearray(tcp_segment(b""))
    pkt[32] = 0xF0                  # data offset 60 bytes, packet has 20
    with pytest.raises(gso.SegmentError, match="header lengths"):
        gso.segment_tcp4(memoryview(pkt), 1000)
    with pytest.raises(gso.SegmentError, match="segment size"):
        gso.segment_tcp4(memoryview(bytearray(tcp_segment(b"x"))), 0)


@given(st.binary(min_size=1, max_size=3000), st.sampled_from([6, 17]))
def test_complete_checksum_gives_what_a_full_computation_gives(payload: bytes,
                                                               proto: int) -> None:
    at = 16 if proto == 6 else 6
    if proto == 6:
        full = tcp_segment(payload)
    else:
        udp = struct.pack("!HHHH", 1, 2, 8 + len(payload), 0) + payload
        pseudo = struct.pack("!IIBBH", SRC, DST, 0, 17, len(udp))
        udp = udp[:6] + (reference_checksum(pseudo + udp) or 0xFFFF).to_bytes(2, "big") + udp[8:]
        full = build(SRC, DST, proto=17, payload=udp)
    partial = bytearray(full)
    pseudo_sum = ones_sum(struct.pack("!IIH", SRC, DST, proto) + (len(full) - 20).to_bytes(2,
                                                                                          "big"))
    partial[20 + at:22 + at] = pseudo_sum.to_bytes(2, "big")
    assert gso.complete_checksum(partial, 20, at)
    # Either form of zero verifies; the kernel sends 0xFFFF where the sum gives 0.
    assert partial[:20 + at] == full[:20 + at] and partial[22 + at:] == full[22 + at:]
    if proto == 6:
        assert tcp_checksum_ok(bytes(partial))
    assert partial[20 + at:22 + at] != b"\0\0"


def test_complete_checksum_refuses_a_field_outside_the_packet() -> None:
    pkt = bytearray(tcp_segment(b"abc"))
    assert not gso.complete_checksum(pkt, 20, len(pkt))
    assert not gso.complete_checksum(pkt, 4, 16)
    assert pkt == tcp_segment(b"abc")


# --- coalescing -------------------------------------------------------------------------

def views(packets: list[bytes]) -> list[memoryview]:
    return [memoryview(bytearray(p)) for p in packets]


def flat(write: list) -> bytes:
    return b"".join(bytes(b) for b in write)


def expand(write: list) -> list[bytes]:
    """The packets a coalesced write stands for, as the kernel would segment it again."""
    header = parse(write[0])
    if header.gso_type == vnet.GSO_NONE:
        return [flat(write[1:])]
    assert header.flags == vnet.F_NEEDS_CSUM and header.csum_start == 20
    assert header.csum_offset == 16
    sp = memoryview(bytearray(flat(write[1:])))
    assert header.hdr_len == 20 + ((sp[32] >> 4) << 2)
    # The field holds the pseudo-header sum, as the kernel expects of NEEDS_CSUM.
    pseudo = ones_sum(struct.pack("!IIH", SRC, DST, 6) + (len(sp) - 20).to_bytes(2, "big"))
    assert struct.unpack_from("!H", sp, 36)[0] % 0xFFFF == pseudo
    assert check_ipv4(sp) is None
    parts, size = gso.segment_tcp4(sp, header.gso_size)
    return wire_packets(parts, size)


@settings(max_examples=150, deadline=None)
@given(payloads, st.integers(536, 1460), options, st.integers(0, 2**32 - 1),
       st.integers(0, 0xFFFF), st.sampled_from([ACK, ACK | PSH]))
def test_segmenting_then_coalescing_gives_back_the_super_packet(
        payload: bytes, mss: int, opts: bytes, seq: int, ident: int, flags: int) -> None:
    assume(len(payload) + 40 + len(opts) <= 65535)
    sp = super_packet(payload, options=opts, seq=seq, ident=ident, flags=flags)
    parts, size = gso.segment_tcp4(sp, mss)
    wire = wire_packets(parts, size)
    writes, merged = gro.coalesce(views(wire))
    if len(wire) == 1:
        assert writes == [[vnet.PLAIN, wire[0]]] and merged == 0
        return
    (write,) = writes
    assert merged == len(wire)
    assert parse(write[0]).gso_size == mss
    got = flat(write[1:])
    assert got[:36] == bytes(sp[:36]) and got[38:] == bytes(sp[38:])
    assert expand(write) == wire


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 1400)), min_size=1, max_size=30),
       st.randoms(use_true_random=False))
def test_coalescing_keeps_every_packet_and_its_order(flows: list, rnd) -> None:
    """Interleaved flows, odd sizes, pure ACKs: the writes, segmented again, are the packets
    that went in, in order."""
    seqs = [1000, 50_000, 7]
    packets = []
    for flow, size in flows:
        payload = bytes(rnd.getrandbits(8) for _ in range(size if flow != 2 else 0))
        packets.append(tcp_segment(payload, seq=seqs[flow], sport=40000 + flow,
                                   options=TIMESTAMPS, ident=len(packets)))
        seqs[flow] += len(payload)
    writes, _ = gro.coalesce(views(packets))
    assert [p for w in writes for p in expand(w)] == packets


def run_of(n: int = 4, size: int = 1000, **kw) -> list[bytes]:
    return [tcp_segment(b"d" * size, seq=1000 + i * size, ident=i, **kw) for i in range(n)]


def test_a_run_of_full_segments_and_a_short_last_is_one_write() -> None:
    packets = run_of(3) + [tcp_segment(b"e" * 10, seq=4000, ident=3, flags=ACK | PSH)]
    writes, merged = gro.coalesce(views(packets))
    assert len(writes) == 1 and merged == 4
    assert flat(writes[0][1:])[33] == ACK | PSH


def mutate(index: int, **kw) -> list[bytes]:
    packets = run_of(4)
    fields = {"seq": 1000 + index * 1000, "ident": index, **kw}
    packets[index] = tcp_segment(b"d" * 1000, **fields)
    return packets


@pytest.mark.parametrize("packets, expected", [
    (mutate(2, flags=ACK | FIN), [2, 1, 1]),
    (mutate(2, flags=ACK | SYN), [2, 1, 1]),
    (mutate(2, flags=ACK | RST), [2, 1, 1]),
    (mutate(2, flags=ACK | URG), [2, 1, 1]),
    (mutate(2, flags=ACK | CWR), [2, 1, 1]),
    (mutate(1, flags=ACK | PSH), [2, 2]),           # PSH ends a run, on its last packet
    (mutate(0, flags=ACK | PSH), [1, 3]),
    (mutate(2, ack=78), [2, 1, 1]),                  # another ACK number
    (mutate(2, window=501), [2, 1, 1]),
    (mutate(2, ttl=63), [2, 1, 1]),
    (mutate(2, tos=4), [2, 1, 1]),
    (mutate(2, options=TIMESTAMPS), [2, 1, 1]),       # other options
    (mutate(2, dport=5202), [2, 1, 1]),               # another flow
    (mutate(2, seq=5000), [2, 1, 1]),                 # a gap
    (mutate(2, frag=0x2000), [2, 1, 1]),             # a fragment (MF)
    (mutate(2, frag=0, ident=9), [2, 1, 1]),           # no DF, and the ID does not count up
    (run_of(4, frag=0), [4]),                        # no DF, IDs counting up
    (mutate(3, seq=3000), [3, 1]),                   # a retransmission
])
def test_what_linux_gro_would_not_coalesce_is_not_coalesced(packets: list[bytes],
                                                            expected: list[int]) -> None:
    writes, _ = gro.coalesce(views(packets))
    assert [len(expand(w)) for w in writes] == expected
    assert [p for w in writes for p in expand(w)] == packets


def corrupt(packet: bytes) -> bytes:
    """The packet with its last payload byte changed and its TCP checksum left as it was."""
    return packet[:-1] + bytes([packet[-1] ^ 0x5A])


@pytest.mark.parametrize("index, expected", [(0, [1, 3]), (1, [1, 1, 2]), (2, [2, 1, 1]),
                                             (3, [3, 1])])
def test_a_segment_whose_checksum_fails_is_never_coalesced(index: int,
                                                          expected: list[int]) -> None:
    packets = run_of(4)
    packets[index] = corrupt(packets[index])
    writes, _ = gro.coalesce(views(packets))
    assert [len(expand(w)) if parse(w[0]).gso_type else 1 for w in writes] == expected
    bad = [w for w in writes if flat(w[1:]) == packets[index]]
    assert len(bad) == 1 and bad[0][0] == vnet.PLAIN     # written as it came: the kernel drops it


def test_a_short_segment_ends_its_run() -> None:
    packets = run_of(2) + [tcp_segment(b"s" * 10, seq=3000, ident=2)] + \
        [tcp_segment(b"d" * 1000, seq=3010, ident=3)]
    writes, _ = gro.coalesce(views(packets))
    assert [len(expand(w)) for w in writes] == [3, 1]


def test_a_longer_segment_does_not_join() -> None:
    packets = run_of(2) + [tcp_segment(b"L" * 1200, seq=3000, ident=2)]
    writes, _ = gro.coalesce(views(packets))
    assert [len(expand(w)) for w in writes] == [2, 1]


def test_runs_stop_at_64_kib() -> None:
    packets = run_of(80, size=1400)
    writes, merged = gro.coalesce(views(packets))
    assert all(len(flat(w[1:])) <= 65535 for w in writes)
    assert len(writes) == 2 and merged == 80
    assert [p for w in writes for p in expand(w)] == packets


@pytest.mark.parametrize("other", [
    build(SRC, DST, proto=17, payload=b"u" * 100),                        # UDP
    build(SRC, DST, proto=1, payload=b"\x08\0\0\0\0\0\0\0"),              # ICMP
    build(SRC, DST, proto=6, payload=tcp_segment(b"o" * 10)[20:],
          options=b"\x01\x01\x01\x00"),                                    # IP options
    tcp_segment(b""),                                                      # a pure ACK
])
def test_other_packets_are_written_as_they_came(other: bytes) -> None:
    packets = run_of(2) + [other] + run_of(2)
    writes, merged = gro.coalesce(views(packets))
    assert [w[0] for w in writes] == [vnet.tcp4_gso(40, 1000), vnet.PLAIN,
                                      vnet.tcp4_gso(40, 1000)]
    assert bytes(writes[1][1]) == other and merged == 4


@given(st.lists(st.binary(min_size=20, max_size=200), max_size=10))
def test_coalesce_never_raises_on_checked_packets(raw: list[bytes]) -> None:
    """Whatever passes check_ipv4 goes through coalesce without an exception."""
    packets = [p for p in (build(SRC, DST, proto=6, payload=r) for r in raw)
               if check_ipv4(p) is None]
    writes, _ = gro.coalesce(views(packets))
    assert sum(len(expand(w)) if parse(w[0]).gso_type else 1 for w in writes) \
        >= len(writes)


def test_the_vnet_headers_written() -> None:
    assert parse(vnet.tcp4_gso(52, 1420)) == (vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4, 52, 1420, 20,
                                              16)
    assert parse(vnet.PLAIN) == (0, vnet.GSO_NONE, 0, 0, 0, 0) and len(vnet.PLAIN) == vnet.SIZE


@pytest.mark.parametrize("packet, expected", [
    (tcp_segment(b"d" * 100), True),
    (tcp_segment(b"d" * 100, options=TIMESTAMPS), True),
    (tcp_segment(b"d" * 100, flags=ACK | PSH), False),        # PSH ends a run
    (tcp_segment(b""), False),                                # a pure ACK
    (tcp_segment(b"d" * 100, flags=ACK | FIN), False),
    (tcp_segment(b"d" * 100, frag=0x2000), False),
    (build(SRC, DST, proto=17, payload=b"u" * 100), False),
    (build(SRC, DST, proto=1, payload=b"\x08" + bytes(30)), False),
])
def test_may_extend_says_whether_a_run_could_go_on(packet: bytes, expected: bool) -> None:
    assert gro.may_extend(memoryview(packet)) is expected


# --- partial checksums inside the seal ------------------------------------------------

def completed(packet: bytes) -> bytes:
    """The packet after the kernel (or a plain-TUN receiver) completed its checksum."""
    ihl = gso.tcp4_partial_at(packet)
    assert ihl
    buf = bytearray(packet)
    assert gso.complete_checksum(buf, ihl, vnet.TCP_CSUM_OFFSET)
    return bytes(buf)


@settings(max_examples=150, deadline=None)
@given(payloads, st.integers(1, 1460), options, flag_sets, st.integers(0, 2**32 - 1))
def test_partial_segments_complete_to_the_full_ones(payload: bytes, mss: int, opts: bytes,
                                                    flags: int, seq: int) -> None:
    sp = super_packet(payload, options=opts, flags=flags, seq=seq)
    full = wire_packets(*gso.segment_tcp4(sp, mss))
    partial = wire_packets(*gso.segment_tcp4(sp, mss, partial=True))
    assert len(partial) == len(full)
    for p, f in zip(partial, full, strict=True):
        assert check_ipv4(p) is None
        assert p[:36] == f[:36] and p[38:] == f[38:]
        assert completed(p) == f


@given(st.binary(max_size=3000), options, st.booleans())
def test_partial_form_then_completion_gives_a_valid_checksum(payload: bytes, opts: bytes,
                                                              full_first: bool) -> None:
    packet = bytearray(tcp_segment(payload, options=opts, checksum=full_first))
    assert gso.partial_tcp4(packet)
    assert gso.tcp4_partial_at(packet) == 20
    assert tcp_checksum_ok(completed(bytes(packet)))
    assert completed(bytes(packet)) == tcp_segment(payload, options=opts)


@given(st.binary(max_size=2000), options)
def test_a_full_checksum_is_partial_only_when_completing_it_changes_nothing(
        payload: bytes, opts: bytes) -> None:
    full = tcp_segment(payload, options=opts)
    if gso.tcp4_partial_at(full):
        assert completed(full) == full


@pytest.mark.parametrize("packet", [
    b"\x45" + bytes(39),                                             # not TCP
    tcp_segment(b"x" * 10, frag=0x2000),                             # more fragments
    tcp_segment(b"x" * 10, frag=0x0001),                             # a later fragment
    tcp_segment(b"")[:39],                                           # no whole TCP header
    b"\x60" + bytes(59),                                             # IPv6
])
def test_what_cannot_carry_a_partial_tcp_checksum_is_left_alone(packet: bytes) -> None:
    buf = bytearray(packet)
    assert not gso.partial_tcp4(buf) and buf == packet
    assert gso.tcp4_partial_at(packet) == 0


@settings(max_examples=100, deadline=None)
@given(payloads, st.integers(536, 1460), options, st.integers(0, 2**32 - 1),
       st.sampled_from([ACK, ACK | PSH]))
def test_trusted_partial_segments_coalesce_without_verification(
        payload: bytes, mss: int, opts: bytes, seq: int, flags: int) -> None:
    assume(len(payload) + 40 + len(opts) <= 65535)
    sp = super_packet(payload, options=opts, seq=seq, flags=flags)
    full = wire_packets(*gso.segment_tcp4(sp, mss))
    partial = wire_packets(*gso.segment_tcp4(sp, mss, partial=True))
    writes, merged = gro.coalesce(views(partial), trusted=True)
    if len(partial) == 1:
        ((header, packet),) = writes
        h = parse(header)
        assert (h.flags, h.gso_type, h.csum_start, h.csum_offset) == (
            vnet.F_NEEDS_CSUM, vnet.GSO_NONE, 20, 16)
        assert h.hdr_len == 38 and completed(bytes(packet)) == full[0]
        return
    (write,) = writes
    assert merged == len(partial) and expand(write) == full


def test_untrusted_partial_segments_are_not_coalesced() -> None:
    sp = super_packet(b"y" * 4000)
    partial = wire_packets(*gso.segment_tcp4(sp, 1000, partial=True))
    writes, merged = gro.coalesce(views(partial))
    assert merged == 0 and all(w[0] == vnet.PLAIN for w in writes)


def test_trusted_packets_that_are_not_partial_tcp_are_written_as_they_came() -> None:
    udp = bytearray(tcp_segment(b"z" * 50))
    udp[9] = 17
    full = tcp_segment(b"z" * 50, flags=ACK | PSH)
    assert not gso.tcp4_partial_at(full)   # (one full checksum in 65535 would look partial)
    writes, _ = gro.coalesce(views([bytes(udp), full]), trusted=True)
    assert [w[0] for w in writes] == [vnet.PLAIN, vnet.PLAIN]
