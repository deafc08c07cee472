"""Underlay pieces for the udp backend's tests: a lossy, reordering L2 relay, a stand-in
for flannel's udp proxy, and a capture of what crosses an interface.

`Relay` is a wire with faults. The kernel the tests run on has no netem qdisc, so loss and
reordering cannot be put on a link with a qdisc; instead a relay namespace sits between two
nodes (node A eth1 <-veth-> relay <-veth-> node B eth1) and a thread of the test process
copies Ethernet frames between its two ends with AF_PACKET sockets, a seeded
`random.Random` deciding, per IPv4 datagram, to drop it or to hold it back and send it
after the next one. Everything else (ARP, IPv6) passes untouched and in order.

A sender that uses UDP GSO (UDP_SEGMENT) hands its veth one big frame holding many
datagrams, and the veth passes it on whole. The relay's sockets read frames with a
virtio_net_hdr in front (PACKET_VNET_HDR); a UDP_L4 GSO frame is cut into its datagrams
here, as the kernel would cut it on a real NIC (IP header copied, total length, ID and
checksum fixed, UDP length and a full UDP checksum computed), so loss and reordering hit
single datagrams. A frame whose checksum the sender left to the hardware (NEEDS_CSUM) gets
it computed. What the relay writes on the other side is always a plain frame of at most
the MTU, with every checksum complete, so the receiving kernel verifies them all. On the
way it checks each inner packet of the wire format (`inner_problem`: complete, checksums
right) and counts what is wrong; asked to, it corrupts inner TCP segments and makes the
outer UDP checksum right again (`corrupt_tcp_payload`), as a sender that corrupted the
packet before sending it would.

`PlainProxy` is the stand-in for flannel's udp backend proxy (its C data plane): a plain
tun (IFF_TUN | IFF_NO_PI, no vnet header, no offloads); a packet read from the tun goes
unchanged to the peer whose subnet holds its destination, and a datagram received goes
unchanged into the tun; nothing is checked. Like flannel it reads and receives into a
buffer of the tun's MTU, so a datagram that is too big for a flannel node is cut short
(counted in `stats["truncated"]`) and the packet then dies in the kernel, as it would on a
flannel node. flannel's proxy also decrements the TTL (both ways) and answers a packet
without a route with ICMP net unreachable; the stand-in leaves both out, neither matters
here.

Both run as threads of the test process, with their sockets and fds made inside the
namespace they serve; both loops poll with timeouts and stop on a flag.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import os
import random
import select
import socket
import struct
import threading
import time
import traceback
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network

from flanneld.core import vnet
from lab.netns import inside, run

# --- checksums ----------------------------------------------------------------------------

def _sum16(data: bytes | bytearray | memoryview) -> int:
    """One's complement sum of the 16-bit big-endian words (odd length padded with a zero),
    as 1..0xFFFF (0 only for all-zero data). 2**16 is 1 mod 0xFFFF, so the sum of the words
    is the whole buffer read as one integer, mod 0xFFFF."""
    n = int.from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    s = n % 0xFFFF
    return s if s or not n else 0xFFFF


def _checksum(*parts: bytes | bytearray | memoryview) -> int:
    """The checksum field over the concatenation of even-length `parts` (the last may be odd):
    the complement of their sum, 0 sent as 0xFFFF (required for UDP, equivalent for others)."""
    total = sum(_sum16(p) for p in parts) % 0xFFFF
    return (0xFFFF - total) or 0xFFFF


def ip_header_checksum(header: bytes | bytearray) -> int:
    """The IPv4 header checksum of `header` with its checksum field taken as zero."""
    h = bytearray(header)
    h[10:12] = b"\0\0"
    s = _sum16(h)
    return 0xFFFF - s


# --- the relay ----------------------------------------------------------------------------

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_HLEN = 14
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
FRAME_BUF = 1 << 18                     # larger than any GSO frame (64 KiB of IP)
BURST = 64                              # frames read from one side before looking again
HOLD = 0.005                            # seconds: a held frame goes out after the next
                                        # one from its side, or after this long
SEND_TRIES, SEND_PAUSE = 200, 0.0002    # a full queue on the far side: wait up to ~50 ms


def split_udp_gso(frame: bytes | memoryview, gso_size: int) -> list[bytes]:
    """The datagrams of a UDP_L4 GSO frame: Ethernet + IPv4 + UDP headers replicated over
    payload slices of `gso_size` bytes, each with its own total length, ID (+1 per
    datagram, as the kernel's segmentation does), header checksum, UDP length and full UDP
    checksum."""
    ihl = (frame[ETH_HLEN] & 0x0F) * 4
    l4 = ETH_HLEN + ihl
    eth = bytes(frame[:ETH_HLEN])
    iph = bytearray(frame[ETH_HLEN:l4])
    ports = bytes(frame[l4:l4 + 4])
    total = int.from_bytes(iph[2:4], "big")
    payload = memoryview(bytes(frame[l4 + 8:ETH_HLEN + total]))
    ident = int.from_bytes(iph[4:6], "big")
    addrs = bytes(iph[12:20])
    out = []
    for k, off in enumerate(range(0, len(payload), gso_size)):
        seg = payload[off:off + gso_size]
        ulen = (8 + len(seg)).to_bytes(2, "big")
        iph[2:4] = (ihl + 8 + len(seg)).to_bytes(2, "big")
        iph[4:6] = ((ident + k) & 0xFFFF).to_bytes(2, "big")
        iph[10:12] = ip_header_checksum(iph).to_bytes(2, "big")
        udph = ports + ulen
        csum = _checksum(addrs + b"\0\x11" + ulen, udph, seg).to_bytes(2, "big")
        out.append(b"".join((eth, iph, udph, csum, seg)))
    return out


_PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP"}


def inner_problem(datagram: bytes | memoryview) -> str | None:
    """What is wrong with the inner packet of an Ethernet/IPv4/UDP `datagram` of the udp
    backend's wire format, or None: a wire packet must be a complete IPv4 packet whose IP
    header checksum and, unless it is a fragment, TCP, UDP (when not 0) or ICMP checksum
    verify, as a plain tun on the far side would need them."""
    outer = (datagram[ETH_HLEN] & 0x0F) * 4
    at = ETH_HLEN + outer + 8
    p = datagram[at:]
    if len(p) < 20 or p[0] >> 4 != 4:
        return f"not IPv4 ({len(p)} bytes)"
    ihl = (p[0] & 0x0F) * 4
    total = int.from_bytes(p[2:4], "big")
    if total != len(p) or ihl < 20 or ihl > total:
        return f"lengths: total {total}, header {ihl}, datagram payload {len(p)}"
    if _sum16(p[:ihl]) != 0xFFFF:
        return "IP header checksum"
    proto, frag = p[9], int.from_bytes(p[6:8], "big") & 0x3FFF
    if frag or proto not in (1, 6, 17):
        return None
    l4 = p[ihl:total]
    if proto == 17 and (len(l4) < 8 or l4[6:8] == b"\0\0"):
        return None
    pseudo = b"" if proto == 1 else bytes(p[12:20]) + bytes((0, proto)) + len(l4).to_bytes(2, "big")
    if _sum16(pseudo + bytes(l4)) != 0xFFFF:
        return f"{_PROTOCOLS[proto]} checksum ({total} bytes)"
    return None


def corrupt_tcp_payload(datagram: bytes | memoryview) -> bytes | None:
    """`datagram` with the last byte of its inner TCP payload flipped and the outer UDP
    checksum made right again (as if the sender had corrupted the packet before sending
    it), or None if the inner packet is not TCP with payload."""
    d = bytearray(datagram)
    outer = (d[ETH_HLEN] & 0x0F) * 4
    udp = ETH_HLEN + outer
    inner = udp + 8
    if len(d) < inner + 40 or d[inner + 9] != 6:
        return None
    hl = (d[inner] & 0x0F) * 4 + ((d[inner + (d[inner] & 0x0F) * 4 + 12] >> 4) * 4)
    end = ETH_HLEN + int.from_bytes(d[ETH_HLEN + 2:ETH_HLEN + 4], "big")
    if end <= inner + hl:
        return None
    d[end - 1] ^= 0xFF
    d[udp + 6:udp + 8] = b"\0\0"
    ulen = d[udp + 4:udp + 6]
    csum = _checksum(bytes(d[ETH_HLEN + 12:ETH_HLEN + 20]) + b"\0\x11" + bytes(ulen),
                     d[udp:end])
    d[udp + 6:udp + 8] = csum.to_bytes(2, "big")
    return bytes(d)


def complete_checksum(frame: bytes | memoryview, start: int, offset: int) -> bytes:
    """`frame` with the checksum the sender left to the hardware filled in: the field at
    `start + offset` holds the pseudo-header sum; the sum runs from `start` to the end of the
    IP packet (so any Ethernet padding is left out)."""
    f = bytearray(frame)
    end = len(f)
    if int.from_bytes(f[12:14], "big") == ETH_P_IP:
        end = min(end, ETH_HLEN + int.from_bytes(f[16:18], "big"))
    field = start + offset
    f[field:field + 2] = _checksum(f[start:end]).to_bytes(2, "big")
    return bytes(f)


class _LoopThread:
    """What Relay and PlainProxy share: a daemon thread running `_loop` until `_stopping`,
    its traceback in `error` if it died, and use as a context manager."""

    error: str | None = None
    _thread: threading.Thread | None = None
    _stopping = False

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def _launch(self, name: str) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _halt(self) -> None:
        """Stop the thread and wait for it (its loop polls at least every 50 ms)."""
        self._stopping = True
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException:
            self.error = traceback.format_exc()

    def _loop(self) -> None:
        raise NotImplementedError


class Relay(_LoopThread):
    """Copies frames between interfaces `left` and `right` of the namespace at `netns_path`,
    dropping `drop` and reordering `reorder` of the IPv4 frames (fractions, per datagram after
    GSO frames are cut), decided by `random.Random(seed)`. `stats` counts what it did; `error`
    holds the traceback if the thread died. Use as a context manager or start()/stop()."""

    def __init__(self, netns_path: str, left: str, right: str, *, seed: int = 1,
                 drop: float = 0.0, reorder: float = 0.0, corrupt: float = 0.0,
                 port: int = 8285):
        self.netns_path, self.left, self.right = netns_path, left, right
        self.seed, self.drop, self.reorder, self.corrupt = seed, drop, reorder, corrupt
        self.port = port
        self.stats = dict.fromkeys(
            ("frames", "gso_frames", "other_gso", "checksums_completed", "datagrams",
             "dropped", "reordered", "arp", "other", "ipv4_fragments", "send_waits",
             "overflows", "send_errors", "inner_checked", "inner_bad", "corrupted"), 0)
        self.bad_inner: list[str] = []          # the first few inner packets that were wrong
        self.send_errnos: set[str] = set()
        self.arp_by_side = {left: 0, right: 0}
        self._socks: list[socket.socket] = []

    def start(self) -> None:
        with inside(self.netns_path):
            for name in (self.left, self.right):
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
                self._socks.append(s)
                s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
                s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)      # SO_RCVBUFFORCE
                s.bind((name, ETH_P_ALL))
                s.setblocking(False)
        self._launch("relay")

    def stop(self) -> None:
        self._halt()
        for s in self._socks:
            s.close()
        self._socks.clear()

    def _ours(self, d: bytes | memoryview) -> bool:
        """An IPv4 UDP datagram to or from the backends' port (the wire format)."""
        if d[ETH_HLEN + 9] != 17:
            return False
        at = ETH_HLEN + (d[ETH_HLEN] & 0x0F) * 4
        return self.port in (int.from_bytes(d[at:at + 2], "big"),
                             int.from_bytes(d[at + 2:at + 4], "big"))

    def _loop(self) -> None:
        rng = random.Random(self.seed)
        chance = rng.random
        st = self.stats
        left, right = self._socks
        names = {left.fileno(): self.left, right.fileno(): self.right}
        other = {left.fileno(): right, right.fileno(): left}
        held: dict[int, bytes | None] = {left.fileno(): None, right.fileno(): None}
        held_since = dict.fromkeys(held, 0.0)
        clock = time.monotonic
        buf = bytearray(FRAME_BUF)
        view = memoryview(buf)
        poller = select.poll()
        for s in self._socks:
            poller.register(s, select.POLLIN)
        unpack = vnet.unpack_from

        def send(out: socket.socket, frame: bytes | memoryview,
                 header: bytes = vnet.PLAIN) -> None:
            # A veth whose peer has GRO on queues frames for the peer's NAPI poll; when that
            # queue is full the send fails (ENOBUFS). Wait for it rather than lose the frame:
            # the relay's losses are the ones it decides.
            for _ in range(SEND_TRIES):
                try:
                    out.sendmsg([header, frame])
                    return
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:
                    if e.errno != errno.ENOBUFS:
                        st["send_errors"] += 1
                        self.send_errnos.add(errno.errorcode.get(e.errno, str(e.errno)))
                        return
                st["send_waits"] += 1
                time.sleep(SEND_PAUSE)
            st["overflows"] += 1

        while not self._stopping:
            waiting = any(frame is not None for frame in held.values())
            ready = poller.poll(HOLD * 1000 if waiting else 50)
            if waiting:
                now = clock()
                for fd, frame in held.items():       # nothing came after it: let it go
                    if frame is not None and now - held_since[fd] >= HOLD:
                        send(other[fd], frame)
                        held[fd] = None
            for fd, _ in ready:
                src, out = (left if fd == left.fileno() else right), other[fd]
                for _ in range(BURST):
                    try:
                        n = src.recv_into(buf)
                    except BlockingIOError:
                        break
                    st["frames"] += 1
                    flags, gso_type, _, gso_size, csum_start, csum_off = unpack(buf)
                    frame = view[vnet.SIZE:n]
                    ethertype = int.from_bytes(frame[12:14], "big")
                    gso_type &= ~vnet.GSO_ECN
                    if ethertype != ETH_P_IP:
                        if ethertype == ETH_P_ARP:
                            st["arp"] += 1
                            self.arp_by_side[names[fd]] += 1
                        else:
                            st["other"] += 1
                        send(out, frame, bytes(buf[:vnet.SIZE]))    # as it came
                        continue
                    if gso_type == vnet.GSO_UDP_L4:
                        st["gso_frames"] += 1
                        datagrams = split_udp_gso(frame, gso_size)
                    elif gso_type != vnet.GSO_NONE:
                        # Not expected on this underlay (only UDP crosses it): passed on
                        # whole, header and all, and counted.
                        st["other_gso"] += 1
                        send(out, frame, bytes(buf[:vnet.SIZE]))
                        continue
                    elif flags & vnet.F_NEEDS_CSUM:
                        st["checksums_completed"] += 1
                        datagrams = [complete_checksum(frame, csum_start, csum_off)]
                    else:
                        datagrams = [frame]
                    for d in datagrams:
                        st["datagrams"] += 1
                        if int.from_bytes(d[20:22], "big") & 0x3FFF:    # MF or an offset
                            st["ipv4_fragments"] += 1
                        elif self._ours(d):
                            st["inner_checked"] += 1
                            problem = inner_problem(d)
                            if problem is not None:
                                st["inner_bad"] += 1
                                if len(self.bad_inner) < 5:
                                    self.bad_inner.append(f"{names[fd]}: {problem}")
                        r = chance()
                        if r < self.drop:
                            st["dropped"] += 1
                            continue
                        if self.corrupt and chance() < self.corrupt:
                            bad = corrupt_tcp_payload(d)
                            if bad is not None:
                                d = bad
                                st["corrupted"] += 1
                        if r < self.drop + self.reorder and held[fd] is None:
                            held[fd], held_since[fd] = bytes(d), clock()
                            continue
                        send(out, d)
                        if held[fd] is not None:
                            send(out, held[fd])
                            held[fd] = None
                            st["reordered"] += 1
        for fd, frame in held.items():
            if frame is not None:
                send(other[fd], frame)


# --- flannel's proxy, stand-in ------------------------------------------------------------

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


class PlainProxy(_LoopThread):
    """The stand-in for flannel's udp proxy on the node in namespace `netns` (a name): makes
    the tun `tun_name` as flannel does (`address`/32, `mtu`, up, a route for `network`),
    binds UDP `bind`, and moves packets unchanged: tun -> the `peers` entry (subnet ->
    (ip, port)) holding the destination; UDP -> tun. `stats` counts packets each way,
    packets without a peer, truncated datagrams and I/O errors; `error` holds the traceback
    if the thread died."""

    def __init__(self, netns: str, netns_path: str, *, bind: tuple[str, int],
                 address: IPv4Address, mtu: int, network: IPv4Network,
                 peers: dict[IPv4Network, tuple[str, int]], tun_name: str = "flannel0"):
        self.netns, self.netns_path, self.bind = netns, netns_path, bind
        self.address, self.mtu, self.network, self.tun_name = address, mtu, network, tun_name
        self.peers = [(int(net.network_address), int(net.netmask), peer)
                      for net, peer in peers.items()]
        self.stats = dict.fromkeys(("to_udp", "to_tun", "no_peer", "truncated", "errors"), 0)
        self._tun = -1
        self._sock: socket.socket | None = None

    def start(self) -> None:
        try:
            with inside(self.netns_path):
                self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._tun = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            self._sock.bind(self.bind)
            self._sock.setblocking(False)
            fcntl.ioctl(self._tun, TUNSETIFF,
                        struct.pack("16sH22x", self.tun_name.encode(), IFF_TUN | IFF_NO_PI))
            n = self.tun_name
            for args in (("link", "set", n, "mtu", str(self.mtu)),
                         ("addr", "add", f"{self.address}/32", "dev", n),
                         ("link", "set", n, "up"),
                         ("route", "add", str(self.network), "dev", n)):
                run("ip", "-n", self.netns, *args)
        except BaseException:
            self.stop()
            raise
        self._launch("plain-proxy")

    def stop(self) -> None:
        self._halt()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._tun >= 0:
            os.close(self._tun)            # not persistent: the device and its route go
            self._tun = -1

    def _peer(self, pkt: bytes) -> tuple[str, int] | None:
        if len(pkt) < 20:
            return None
        dst = int.from_bytes(pkt[16:20], "big")
        for net, mask, peer in self.peers:
            if dst & mask == net:
                return peer
        return None

    def _loop(self) -> None:
        tun, sock, st, mtu = self._tun, self._sock, self.stats, self.mtu
        assert sock is not None
        poller = select.poll()
        poller.register(tun, select.POLLIN)
        poller.register(sock, select.POLLIN)
        buf = bytearray(mtu)
        view = memoryview(buf)
        while not self._stopping:
            if not poller.poll(50):
                continue
            for _ in range(BURST):
                try:
                    pkt = os.read(tun, mtu)
                except BlockingIOError:
                    break
                peer = self._peer(pkt)
                if peer is None:
                    st["no_peer"] += 1
                    continue
                try:
                    sock.sendto(pkt, peer)
                    st["to_udp"] += 1
                except OSError:
                    st["errors"] += 1
            for _ in range(BURST):
                try:
                    n, _, msg_flags, _ = sock.recvmsg_into([buf], 0)
                except BlockingIOError:
                    break
                if msg_flags & socket.MSG_TRUNC:
                    st["truncated"] += 1
                try:
                    os.write(tun, view[:n])
                    st["to_tun"] += 1
                except OSError:
                    st["errors"] += 1


# --- device settings ----------------------------------------------------------------------

SIOCETHTOOL = 0x8946
_ETHTOOL = {"tso": (0x1E, 0x1F), "gro": (0x2B, 0x2C)}     # (get, set) legacy commands


def offload(netns_path: str, ifname: str, feature: str, on: bool | None = None) -> bool:
    """Turn `feature` ("tso": all TCP segmentation offload, "gro": generic receive offload)
    of `ifname` on or off (None: leave it) and say whether it is on.

    Why the relay wants both: a veth hands frames to its peer's GRO (a NAPI poll that
    coalesces datagrams for sockets that asked for UDP_GRO) only when the peer has GRO on
    and the sending end has no TSO (for frames from a socket such as the relay's)."""
    get, set_ = _ETHTOOL[feature]
    value = ctypes.create_string_buffer(8)

    def call(cmd: int, data: int = 0) -> int:
        struct.pack_into("II", value, 0, cmd, data)
        ifreq = struct.pack("16sP16x", ifname.encode(), ctypes.addressof(value))
        with inside(netns_path):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            fcntl.ioctl(s, SIOCETHTOOL, ifreq)
        return struct.unpack_from("II", value)[1]

    if on is not None:
        call(set_, int(on))
    return bool(call(get))


class Capture:
    """The payload of every UDP datagram to `port` that reaches (or leaves) interface
    `ifname` of a namespace, from `source` only if given; a UDP GSO frame counts as one."""

    def __init__(self, netns_path: str, ifname: str, port: int,
                 source: str | None = None) -> None:
        with inside(netns_path):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((ifname, 0))
        self.port = port
        self.source = None if source is None else IPv4Address(source).packed
        self.sock.settimeout(0.2)
        self.payloads: list[bytes] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                frame = self.sock.recv(65535)
            except TimeoutError:
                continue
            if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
                continue
            if self.source is not None and frame[26:30] != self.source:
                continue
            ihl = (frame[14] & 0x0F) * 4
            udp = frame[14 + ihl:]
            if struct.unpack("!H", udp[2:4])[0] == self.port:
                self.payloads.append(bytes(udp[8:]))

    def stop(self) -> list[bytes]:
        self._stop = True
        self._thread.join(5)
        self.sock.close()
        return self.payloads


def tcp_transfer(src_netns_path: str, dst_netns_path: str, dst_ip: str, data: bytes,
                 port: int = 5201, timeout: float = 10.0,
                 during: Callable[[], None] | None = None) -> None:
    """Send `data` over TCP from a process socket in one namespace to a server in another
    and check that the server got exactly it (length and sha256); `during` runs once the
    sending is under way."""
    with inside(dst_netns_path):
        server = socket.create_server((dst_ip, port))
    server.settimeout(timeout)
    got: list[str] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(timeout)
            h, n = hashlib.sha256(), 0
            while chunk := conn.recv(1 << 16):
                h.update(chunk)
                n += len(chunk)
            got.append(f"{n} {h.hexdigest()}")

    receiver = threading.Thread(target=serve, daemon=True)
    receiver.start()
    try:
        with inside(src_netns_path):
            client = socket.create_connection((dst_ip, port), timeout=timeout)
        with client:
            sender = threading.Thread(target=client.sendall, args=(data,), daemon=True)
            sender.start()
            if during is not None:
                during()
            sender.join(timeout + 30)
            client.shutdown(socket.SHUT_WR)
            receiver.join(timeout + 30)
    finally:
        server.close()
    assert got == [f"{len(data)} {hashlib.sha256(data).hexdigest()}"]
