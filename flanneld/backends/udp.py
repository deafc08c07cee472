"""The udp backend's data plane: IPv4 packets between the TUN device and a UDP socket.

flannel's wire format: a UDP datagram's payload is exactly one inner IPv4 packet. Packets
the kernel routes into the TUN go to the peer whose subnet holds their destination;
datagrams from peers go into the TUN. Header logic (checks, TTL, ICMP errors) lives in
`core.packet`, route lookup in `core.routes`; this module is the I/O around them.

If the device is deleted from outside (`ip link del flannel0`), the kernel detaches the
fd: poll reports POLLERR and every read or write fails with EBADFD. The thread then stops
forwarding, waits RECREATE_GRACE_MS, makes the device again with its address, MTU and
route (retrying every RECREATE_PAUSE_MS until it works, e.g. once another device stops
holding the name), and goes on with the new fd; `tun_problem` says why forwarding is
stopped meanwhile.

This is the measured exception to the I/O rule (see bench/throughput.py). One thread runs
both directions, as flannel's C proxy does. With a TUN that has a virtio-net header (the
default, `offload`), `_forward_vectors` moves TCP as super-packets: up to TX_BATCH reads
of up to 64 KiB from the TUN, each segmented (`core.gso`) and sent with UDP GSO, then up
to BATCH receives (UDP GRO: many datagrams each) whose datagrams are checked one by one
and coalesced (`core.gro`) into GSO writes. Without it, `_forward` moves one packet per
system call, BATCH each way per round. Either polls the TUN, the socket and a wake pipe
only when both reads hit EAGAIN, and after a poll reads only what poll said is readable
(a system call and an exception fewer per wake-up, which a ping's round trip pays four
times). One thread for both directions moved about 25% more TCP than one per direction,
for less CPU: two busy threads hand the GIL to each other around every syscall. The loop
binds what it uses to locals, reuses its buffers, keeps packet counts in locals that it
publishes once per round, and logs nothing per packet. Only this thread writes the
counters.

Where we differ from flannel's C proxy:
- Received datagrams are checked: the sender must be a peer, the packet well-formed IPv4
  and addressed to this node's subnet. flannel trusts whatever reaches the port.
- The TTL is decremented once, on receive (the kernel already did it on the way into the
  TUN). A packet whose TTL runs out gets an ICMP Time Exceeded back to its source, through
  the peer it came from; flannel drops it silently.
- ICMP Net Unreachable (no route) leaves through a raw socket, not back into the TUN: the
  kernel drops a packet that arrives on the TUN from the TUN's own address as a martian
  (unless accept_local is set), so flannel's copy never reaches the sender.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import struct
import threading
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

from ..core import sealing, vnet
from ..core.backend import UDP, Backend
from ..core.errors import ConfigError, FlannelError
from ..core.gro import coalesce, may_extend
from ..core.gso import (
    SegmentError,
    complete_checksum,
    partial_tcp4,
    segment_tcp4,
    tcp4_partial_at,
)
from ..core.packet import (
    CODE_NET_UNREACH,
    CODE_TTL_EXCEEDED,
    DROP_BAD_CHECKSUM,
    DROP_BAD_HEADER_LEN,
    DROP_BAD_TOTAL_LEN,
    DROP_NOT_IPV4,
    DROP_NOT_LOCAL,
    DROP_TOO_SHORT,
    DROP_TTL_EXCEEDED,
    ICMP_DEST_UNREACH,
    ICMP_TIME_EXCEEDED,
    Buffer,
    accept_ipv4,
    check_ipv4,
    dst_of,
    icmp_error,
    src_of,
)
from ..core.routes import Routes
from ..core.session import DROPS as SEALED_DROPS
from ..io import udp_offload
from ..io.tun import configure_tun, enable_offloads, open_tun
from .udp_sealed import DROP_NO_KEY, Encryption, Keyring
from .udp_send import DROP_SEND_ERROR, TrainSender

log = logging.getLogger(__name__)

MIN_MTU = 68                 # RFC 791: every IPv4 link must carry 68-byte packets
BUFSIZE = 65536              # larger than any datagram, so none is truncated
BATCH = 64                   # packets per direction per round (a round rereads the routes)
SEND_TIMEOUT = 0.1           # seconds a blocked sendto may wait (kernel SO_SNDTIMEO)
JOIN_TIMEOUT = 0.5
ERROR_PAUSE_MS = 100         # after a read error that is not EAGAIN: no busy loop
RECREATE_GRACE_MS = 200      # after the TUN device is deleted, before making it again: whoever
                             # deleted it may be putting a device of its own in its place
RECREATE_PAUSE_MS = 1000     # between attempts to make a deleted TUN device again
RCVBUF = 4 << 20             # bytes of socket receive buffer to ask for
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)

# Drop reasons: the packet checks', then the data plane's own.
DROP_NO_ROUTE = "no_route"            # tun -> udp: no peer's subnet holds the destination
DROP_UNKNOWN_PEER = "unknown_peer"    # udp -> tun: the sender is not a peer's public IP
DROP_WRITE_ERROR = "write_error"      # the write into the TUN failed
DROP_READ_ERROR = "read_error"        # a read from the TUN or the socket failed (not EAGAIN)
DROP_BAD_GSO = "bad_gso"              # tun -> udp: a super-packet that cannot be segmented
CHECK_REASONS = (DROP_TOO_SHORT, DROP_NOT_IPV4, DROP_BAD_HEADER_LEN, DROP_BAD_TOTAL_LEN,
                 DROP_BAD_CHECKSUM)
DROP_REASONS = CHECK_REASONS + (DROP_NO_ROUTE, DROP_UNKNOWN_PEER, DROP_NOT_LOCAL,
                                DROP_TTL_EXCEEDED, DROP_SEND_ERROR, DROP_WRITE_ERROR,
                                DROP_READ_ERROR, DROP_BAD_GSO, DROP_NO_KEY) + SEALED_DROPS

_DROP_KEYS = {reason: f"drop_{reason}" for reason in DROP_REASONS}
# With offloads: super-packets read from the TUN and the wire packets they became; GSO
# sends and those the kernel refused (sent again without GSO); partial checksums completed;
# receives that held more than one datagram (UDP GRO); TUN writes that coalesced several
# packets and how many packets went into them.
OFFLOAD_COUNTERS = ("tx_tso_packets", "tx_segments", "tx_gso_sends", "tx_gso_fallbacks",
                    "tx_checksums_completed", "rx_gro_receives", "rx_coalesced_writes",
                    "rx_coalesced_packets")
COUNTERS = ("tx_packets", "tx_bytes", "rx_packets", "rx_bytes", "icmp_sent_net_unreach",
            "icmp_sent_time_exceeded", "icmp_failed",
            "tun_recreated") + OFFLOAD_COUNTERS + tuple(_DROP_KEYS.values())
OFFLOADS = ("tun_vnet_hdr", "tun_tso", "udp_gso", "udp_gro")
RX_BUFSIZE = 1 << 20         # one receive batch: up to this many bytes of datagrams
TX_BUFSIZE = 1 << 20         # one round's TUN reads, each into the next free part
IPPROTO_UDP = 17
OVERHEAD_SEALED = sealing.OVERHEAD   # what sealing adds to each inner packet
TX_BATCH = 16                # super-packets per round (each up to 64 KiB); receives: BATCH

_SO_SNDTIMEO = struct.pack("ll", 0, int(SEND_TIMEOUT * 1_000_000))


class UdpBackend:
    """flannel's udp backend for one node: the TUN device, the UDP socket and the thread
    that moves packets between them, routing on a `Routes` snapshot swapped in by the daemon.
    """

    kind = UDP
    OVERHEAD = UDP.overhead  # IPv4 20 + UDP 8

    def __init__(self, *, iface_addr: IPv4Address, iface_mtu: int, port: int,
                 network: IPv4Network, subnet: IPv4Network, tun_name: str = "flannel0",
                 offload: bool = True, encryption: Encryption | None = None):
        if not 0 < port < 65536:
            raise ConfigError(f"udp backend port {port} is not in 1..65535")
        self.overhead = self.OVERHEAD + (0 if encryption is None else sealing.OVERHEAD)
        if iface_mtu - self.overhead < MIN_MTU:
            raise ConfigError(f"underlay MTU {iface_mtu} leaves less than {MIN_MTU} bytes "
                              f"for packets after the {self.overhead}-byte encapsulation")
        if not subnet.subnet_of(network):
            raise ConfigError(f"node subnet {subnet} is not inside network {network}")
        self.iface_addr, self.iface_mtu, self.port = iface_addr, iface_mtu, port
        self.network, self.subnet, self.tun_name = network, subnet, tun_name
        self.offload = offload       # try TUN TSO/checksum offload and UDP GSO/GRO
        self.keyring = None if encryption is None else Keyring(encryption)
        self.tun_addr = subnet.network_address        # flannel0's /32
        self._routes = Routes.EMPTY
        self._tun = -1
        self._sock: socket.socket | None = None
        self._raw: socket.socket | None = None     # sends ICMP errors to local sources
        self._wake: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._tun_problem: str | None = None         # set by the data-plane thread only
        self._counts = dict.fromkeys(COUNTERS, 0)    # written by the data-plane thread only
        self.offloads = dict.fromkeys(OFFLOADS, False)   # what start() found the kernel allows
        self._sender: TrainSender | None = None      # the vector loop's sends (udp_send)

    @property
    def mtu(self) -> int:
        """The TUN's MTU: the underlay's minus the encapsulation (and the encryption's)."""
        return self.iface_mtu - self.overhead

    # --- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """Bind the UDP socket, open and configure the TUN, start the data-plane thread. Acts in
        the calling thread's network namespace. FlannelError (nothing left behind) on failure."""
        if self._thread is not None:
            raise FlannelError(f"udp backend on {self.tun_name} is already started")
        where = f"{self.iface_addr}:{self.port}"
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw: socket.socket | None = None
        tun = -1
        try:
            try:
                sock.bind((str(self.iface_addr), self.port))
            except OSError as e:
                raise FlannelError(f"cannot bind the udp backend's socket to {where}: "
                                   f"{e.strerror}") from None
            # Blocking sends (a full send buffer waits, bounded by SO_SNDTIMEO) and
            # non-blocking receives (MSG_DONTWAIT), as flannel's proxy does.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _SO_SNDTIMEO)
            _grow_receive_buffer(sock)
            try:
                raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            except OSError as e:
                raise FlannelError(f"cannot open a raw socket for the udp backend's ICMP "
                                   f"errors: {e.strerror}") from None
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _SO_SNDTIMEO)
            offloads = self._probe_socket(sock)
            tun, offloads["tun_vnet_hdr"], offloads["tun_tso"] = self._open_tun()
            configure_tun(self.tun_name, self.tun_addr, self.mtu, self.network)
            self._wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except BaseException:
            sock.close()
            if raw is not None:
                raw.close()
            if tun >= 0:
                os.close(tun)     # the device is not persistent: it and its route go
            raise
        self._sock, self._raw, self._tun, self._stopping = sock, raw, tun, False
        self.offloads = offloads
        self._thread = threading.Thread(target=self._run, name=f"{self.tun_name}-dataplane",
                                        daemon=True)
        self._thread.start()
        log.info("udp backend up: %s %s/32 mtu %d, route %s, UDP %s; offloads: %s",
                 self.tun_name, self.tun_addr, self.mtu, self.network, where,
                 _describe(offloads, self.offload))

    def _probe_socket(self, sock: socket.socket) -> dict[str, bool]:
        """Which of UDP GSO and GRO the kernel allows (GRO is turned on here); all off when
        offloads are not wanted."""
        offloads = dict.fromkeys(OFFLOADS, False)
        if self.offload:
            offloads["udp_gso"] = udp_offload.gso_supported(sock)
            offloads["udp_gro"] = udp_offload.enable_gro(sock)
        return offloads

    def _open_tun(self) -> tuple[int, bool, bool]:
        """(fd, vnet_hdr, tso): the TUN with a virtio-net header and TSO/checksum offload when
        wanted and the kernel allows, else a plain one."""
        if self.offload:
            try:
                fd = open_tun(self.tun_name, vnet_hdr=True)
            except FlannelError as e:
                log.info("tun device %s without a virtio-net header: %s", self.tun_name, e)
            else:
                return fd, True, enable_offloads(fd)
        return open_tun(self.tun_name), False, False

    def stop(self) -> None:
        """Stop and join the thread, close the sockets and the TUN (which removes the device
        and its route). Idempotent."""
        self._stopping = True
        if self._wake is not None:
            try:
                os.write(self._wake[1], b"x")
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT)
            if self._thread.is_alive():
                log.warning("udp backend thread %s did not stop in %.1f s", self._thread.name,
                            JOIN_TIMEOUT)
            self._thread = None
        for sock in (self._sock, self._raw):
            if sock is not None:
                sock.close()
        self._sock = self._raw = None
        if self._tun >= 0:
            os.close(self._tun)
            self._tun = -1
        if self._wake is not None:
            for fd in self._wake:
                os.close(fd)
            self._wake = None

    def set_routes(self, routes: Routes) -> None:
        """Swap in a new snapshot, from any thread. One attribute store: the loop sees the old
        snapshot or the new one whole, from its next round on."""
        if self.keyring is not None:
            self.keyring.update(routes)   # before the routes: no peer without its session
        self._routes = routes

    @property
    def routes(self) -> Routes:
        return self._routes

    def alive(self) -> bool:
        """Started, not stopped, and the data-plane thread running."""
        return self._thread is not None and not self._stopping and self._thread.is_alive()

    def tun_problem(self) -> str | None:
        """None while the TUN forwards (or before start); while the device is gone, why:
        "tun device flannel0 is gone; re-creating it: <the last attempt's error>"."""
        return self._tun_problem

    def counters(self) -> dict[str, int]:
        """tx_/rx_ packets and bytes, drop_<reason> for every reason in DROP_REASONS,
        icmp_sent_<kind>, icmp_failed and tun_recreated, all since construction. Packet and
        byte counts are published once per round (at most 2 * BATCH packets) and when the
        loop idles."""
        return dict(self._counts)

    def gauges(self) -> dict[str, int]:
        """udp_offload_<feature>: 1 for each offload in use (OFFLOADS), else 0."""
        gauges = {f"udp_offload_{name}": int(on) for name, on in self.offloads.items()}
        if self.keyring is not None:
            gauges["udp_peers_without_key"] = self.keyring.without_key
        return gauges

    # --- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                if self.offloads["tun_vnet_hdr"]:
                    self._forward_vectors()  # returns when stopping or the TUN is gone
                else:
                    self._forward()          # the same, one packet per system call
                if not self._stopping:
                    self._recreate_tun()
        except BaseException:
            if not self._stopping:
                log.exception("udp backend thread %s died", threading.current_thread().name)

    def _forward(self) -> None:
        """Move packets both ways until stopped or the TUN device is gone (EBADFD).

        tun -> udp: send each packet to the peer whose subnet holds its destination; none:
        ICMP net unreachable to its source. udp -> tun: only from a peer, well-formed IPv4,
        for this node's subnet, with TTL left (else ICMP time exceeded back to the sender).
        """
        tun, sock, c = self._tun, self._sock, self._counts
        assert sock is not None and self._wake is not None
        poller = select.poll()
        for fd in (tun, sock.fileno(), self._wake[0]):
            poller.register(fd, select.POLLIN)
        wait = poller.poll
        pauser = select.poll()
        pauser.register(self._wake[0], select.POLLIN)
        pause = pauser.poll
        read, write, sendto, recv = os.read, os.write, sock.sendto, sock.recvfrom_into
        check, dst, accept, partial_at = check_ipv4, dst_of, accept_ipv4, tcp4_partial_at
        buf = bytearray(BUFSIZE)
        view = memoryview(buf)
        dontwait = socket.MSG_DONTWAIT
        mask, net = int(self.subnet.netmask), int(self.subnet.network_address)
        drop_keys = _DROP_KEYS
        k_send, k_write = drop_keys[DROP_SEND_ERROR], drop_keys[DROP_WRITE_ERROR]
        k_peer = drop_keys[DROP_UNKNOWN_PEER]
        k_read = drop_keys[DROP_READ_ERROR]
        k_no_key = drop_keys[DROP_NO_KEY]
        keyring = self.keyring       # None: clear text, as flannel
        seal = None if keyring is None else keyring.seal
        open_ = None if keyring is None else keyring.open
        tx, tx_bytes, rx, rx_bytes = (c["tx_packets"], c["tx_bytes"], c["rx_packets"],
                                      c["rx_bytes"])
        sfd = sock.fileno()
        tun_ready = sock_ready = True
        while not self._stopping:
            if not (tun_ready or sock_ready):
                c["tx_packets"], c["tx_bytes"] = tx, tx_bytes
                c["rx_packets"], c["rx_bytes"] = rx, rx_bytes
                for fd, _ in wait():
                    tun_ready = tun_ready or fd == tun
                    sock_ready = sock_ready or fd == sfd
                continue
            routes = self._routes
            lookup, peers = routes.lookup, routes.peers
            failed = False
            try:
                for _ in range(BATCH if tun_ready else 0):
                    pkt = read(tun, BUFSIZE)
                    reason = check(pkt)
                    if reason is not None:
                        c[drop_keys[reason]] += 1
                        continue
                    hop = lookup(dst(pkt))
                    if hop is None:
                        self._net_unreachable(pkt)
                        continue
                    out = pkt
                    if seal is not None:
                        sealed = seal(pkt, hop[0])
                        if sealed is None:
                            c[k_no_key] += 1
                            continue
                        out = sealed
                    try:
                        sendto(out, hop)
                    except OSError:
                        c[k_send] += 1
                        continue
                    tx += 1
                    tx_bytes += len(pkt)
            except BlockingIOError:
                tun_ready = False
            except OSError as e:
                if e.errno == errno.EBADFD:     # the device was deleted: _run makes it again
                    c["tx_packets"], c["tx_bytes"] = tx, tx_bytes
                    return
                c[k_read] += 1
                failed = True
            try:
                for _ in range(BATCH if sock_ready else 0):
                    n, addr = recv(buf, BUFSIZE, dontwait)
                    if addr[0] not in peers:
                        c[k_peer] += 1
                        continue
                    got = view[:n]
                    if open_ is not None:
                        opened = open_(got, addr[0])
                        if isinstance(opened, str):
                            c[drop_keys[opened]] += 1
                            continue
                        got = memoryview(bytearray(opened))  # writable: the TTL goes down
                    reason = accept(got, mask, net)
                    if reason is not None:
                        self._refuse(got, reason, addr)
                        continue
                    if open_ is not None and (ihl := partial_at(got)):
                        complete_checksum(got, ihl, vnet.TCP_CSUM_OFFSET)  # a plain TUN
                    try:
                        write(tun, got)
                    except OSError:
                        c[k_write] += 1
                        continue
                    rx += 1
                    rx_bytes += n
            except BlockingIOError:
                sock_ready = False
            except OSError:
                c[k_read] += 1
                failed = True
            c["tx_packets"], c["tx_bytes"] = tx, tx_bytes
            c["rx_packets"], c["rx_bytes"] = rx, rx_bytes
            if failed:
                pause(ERROR_PAUSE_MS)      # an error that may persist: no busy loop

    def _forward_vectors(self) -> None:
        """`_forward` for a TUN with a virtio-net header: many packets per system call.

        tun -> udp: each round reads into the next free part of one buffer. A TCP
        super-packet is segmented (`core.gso`) and its wire packets go to the peer in one
        GSO `sendmsg` (or as many as UDP_MAX_SEGMENTS and 64 KiB allow). Other packets have
        a partial checksum completed; consecutive UDP packets of one size to one peer wait
        for one GSO send at the end of the round or when the train ends, everything else
        (ICMP, TCP without TSO) leaves at once. A peer whose route refuses GSO gets
        packets one `sendmsg` each from then on (`udp_send.TrainSender`). udp -> tun:
        receives fill one buffer (with UDP GRO a receive holds many datagrams of one
        peer), every datagram gets the same checks as in `_forward`, then runs of TCP
        segments of one flow are coalesced (`core.gro`) into one `writev` each.
        """
        tun, sock, c = self._tun, self._sock, self._counts
        assert sock is not None and self._wake is not None
        poller = select.poll()
        for fd in (tun, sock.fileno(), self._wake[0]):
            poller.register(fd, select.POLLIN)
        wait = poller.poll
        pauser = select.poll()
        pauser.register(self._wake[0], select.POLLIN)
        pause = pauser.poll
        readv = os.readv
        sendto, recvmsg = sock.sendto, sock.recvmsg_into
        check, dst, accept, unpack = check_ipv4, dst_of, accept_ipv4, vnet.unpack_from
        segment, gro_size = segment_tcp4, udp_offload.gro_size
        extends = may_extend
        tsize = vnet.SIZE + BUFSIZE
        tview = memoryview(bytearray(TX_BUFSIZE))
        tlimit = TX_BUFSIZE - tsize
        self._sender = TrainSender(sock, c, self.offloads["udp_gso"])
        send = self._sender.send
        rbuf = bytearray(RX_BUFSIZE)
        rview = memoryview(rbuf)
        rlimit = RX_BUFSIZE - BUFSIZE
        ancillary = udp_offload.ANCILLARY
        max_segments, max_bytes = udp_offload.MAX_SEGMENTS, udp_offload.MAX_GSO_BYTES
        tcpv4, needs_csum, hsize = vnet.GSO_TCPV4, vnet.F_NEEDS_CSUM, vnet.SIZE
        dontwait = socket.MSG_DONTWAIT
        mask, net = int(self.subnet.netmask), int(self.subnet.network_address)
        drop_keys = _DROP_KEYS
        k_read, k_gso = drop_keys[DROP_READ_ERROR], drop_keys[DROP_BAD_GSO]
        k_send = drop_keys[DROP_SEND_ERROR]
        k_peer = drop_keys[DROP_UNKNOWN_PEER]
        k_short = drop_keys[DROP_TOO_SHORT]
        k_no_key = drop_keys[DROP_NO_KEY]
        keyring = self.keyring       # None: clear text, as flannel
        seal = None if keyring is None else keyring.seal
        open_ = None if keyring is None else keyring.open
        # Sealed, a TCP packet keeps a partial checksum: the tag covers it (core.gro).
        sealed_tcp, partial = keyring is not None, partial_tcp4
        join = b"".join
        sfd = sock.fileno()
        tun_ready = sock_ready = True
        while not self._stopping:
            if not (tun_ready or sock_ready):
                for fd, _ in wait():
                    tun_ready = tun_ready or fd == tun
                    sock_ready = sock_ready or fd == sfd
                continue
            routes = self._routes
            lookup, peers = routes.lookup, routes.peers
            failed = False
            tx = tx_bytes = tso = segments = completed = 0
            off = 0
            train: list[Buffer] = []          # UDP packets of one size to one peer, unsent
            train_hop: tuple[str, int] = ("", 0)
            train_size = train_bytes = 0
            train_open = gone = False
            try:
                for _ in range(TX_BATCH if tun_ready else 0):
                    if off > tlimit:
                        break
                    region = tview[off:off + tsize]
                    n = readv(tun, [region])
                    flags, gso_type, _, gso_size, csum_start, csum_offset = unpack(region)
                    pkt = region[hsize:n]
                    off = (off + n + 7) & ~7
                    reason = check(pkt)
                    if reason is not None:
                        c[drop_keys[reason]] += 1
                        continue
                    hop = lookup(dst(pkt))
                    if hop is None:
                        self._net_unreachable(pkt)
                        continue
                    if gso_type & ~vnet.GSO_ECN != tcpv4:
                        if flags & needs_csum and not (sealed_tcp and partial(pkt)) and (
                                complete_checksum(pkt, csum_start, csum_offset)):
                            completed += 1
                        size = n - hsize
                        out: Buffer = pkt
                        if seal is not None:
                            sealed = seal(pkt, hop[0])
                            if sealed is None:
                                c[k_no_key] += 1
                                continue
                            out = sealed
                        if pkt[9] != IPPROTO_UDP:    # ICMP, TCP without TSO: at once
                            try:
                                sendto(out, hop)
                            except OSError:
                                c[k_send] += 1
                                continue
                            tx += 1
                            tx_bytes += size
                            continue
                        wire = len(out)              # the datagram's payload, sealed or not
                        if train and (hop != train_hop or not train_open or wire > train_size
                                      or len(train) == max_segments
                                      or train_bytes + wire > max_bytes):
                            send(train, 1, train_size, train_bytes, train_hop)
                            train = []
                        if not train:
                            train_hop, train_size, train_bytes = hop, wire, 0
                        train.append(out)            # sent with the next UDP GSO send
                        train_bytes += wire
                        train_open = wire == train_size   # a shorter one ends the train
                        continue
                    try:
                        parts, size = segment(pkt, gso_size, sealed_tcp)
                    except SegmentError:
                        c[k_gso] += 1
                        continue
                    tso += 1
                    count = len(parts) >> 1
                    segments += count
                    length = n - hsize + (count - 1) * (size - gso_size)
                    if seal is None:
                        send(parts, 2, size, length, hop)
                        continue
                    train_sealed: list[Buffer] = []
                    for i in range(0, len(parts), 2):
                        sealed = seal(join((parts[i], parts[i + 1])), hop[0])
                        if sealed is None:
                            break
                        train_sealed.append(sealed)
                    if len(train_sealed) < count:
                        c[k_no_key] += count
                        continue
                    send(train_sealed, 1, size + OVERHEAD_SEALED, length + count * OVERHEAD_SEALED,
                         hop)
            except BlockingIOError:
                tun_ready = False
            except OSError as e:
                if e.errno == errno.EBADFD:     # the device was deleted: _run makes it again
                    gone = True
                else:
                    c[k_read] += 1
                    failed = True
            if train:
                send(train, 1, train_size, train_bytes, train_hop)
            if tx or tso or completed:
                c["tx_packets"] += tx
                c["tx_bytes"] += tx_bytes
                c["tx_tso_packets"] += tso
                c["tx_segments"] += segments
                c["tx_checksums_completed"] += completed
            if gone:
                return
            batch: list[memoryview] = []
            gro = at = 0
            try:
                for _ in range(BATCH if sock_ready else 0):
                    if at > rlimit:
                        break
                    n, anc, _, addr = recvmsg([rview[at:at + BUFSIZE]], ancillary, dontwait)
                    if not n:                       # an empty datagram
                        c[k_peer if addr[0] not in peers else k_short] += 1
                        continue
                    size = gro_size(anc, n)
                    if addr[0] not in peers:        # every datagram of the receive counts
                        c[k_peer] += -(-n // size)
                        continue
                    end = at + n
                    if size < n:
                        gro += 1
                    for o in range(at, end, size):
                        pkt = rview[o:min(o + size, end)]
                        if open_ is not None:
                            opened = open_(pkt, addr[0])
                            if isinstance(opened, str):
                                c[drop_keys[opened]] += 1
                                continue
                            pkt = memoryview(bytearray(opened))  # writable: the TTL goes down
                        reason = accept(pkt, mask, net)
                        if reason is not None:
                            self._refuse(pkt, reason, addr)
                            continue
                        batch.append(pkt)
                    at = (end + 7) & ~7
                    if batch and not extends(batch[-1]):
                        # Nothing can join a run after this packet: write now rather than
                        # after the next receive (a ping or an ACK waits one system call less).
                        self._write_batch(batch, gro)
                        batch, gro = [], 0
            except BlockingIOError:
                sock_ready = False
            except OSError:
                c[k_read] += 1
                failed = True
            if batch:
                self._write_batch(batch, gro)
            if failed:
                pause(ERROR_PAUSE_MS)      # an error that may persist: no busy loop

    def _write_batch(self, batch: list[memoryview], gro: int) -> None:
        """Coalesce the checked packets of `batch` and write them into the TUN; count them
        (`gro`: how many of the receives behind them held several datagrams)."""
        c, tun, writev = self._counts, self._tun, os.writev
        writes, merged = coalesce(batch, self.keyring is not None)
        rx, rx_bytes = len(batch), sum(len(p) for p in batch)
        for w in writes:
            try:
                writev(tun, w)
            except OSError:
                if len(w) == 2:             # a packet as it came
                    lost, size = 1, len(w[1])
                else:                       # header, then the payloads of `lost` packets
                    lost = len(w) - 2
                    size = sum(len(b) for b in w[2:]) + lost * len(w[1])
                c[_DROP_KEYS[DROP_WRITE_ERROR]] += lost
                rx -= lost
                rx_bytes -= size
        c["rx_packets"] += rx
        c["rx_bytes"] += rx_bytes
        c["rx_gro_receives"] += gro
        c["rx_coalesced_writes"] += merged - len(batch) + len(writes)
        c["rx_coalesced_packets"] += merged

    def _recreate_tun(self) -> None:
        """The TUN device was deleted and this fd detached from it: close the fd, then (after
        RECREATE_GRACE_MS) open and configure the device again, every RECREATE_PAUSE_MS until
        that works or stop."""
        assert self._wake is not None
        name, gone = self.tun_name, f"tun device {self.tun_name} is gone; re-creating it"
        self._tun_problem = gone
        old, self._tun = self._tun, -1
        os.close(old)
        log.warning("tun device %s vanished (deleted from outside?); forwarding stops "
                    "until it is re-created", name)
        pauser = select.poll()
        pauser.register(self._wake[0], select.POLLIN)
        pauser.poll(RECREATE_GRACE_MS)
        logged = None
        while not self._stopping:
            tun = -1
            try:
                tun, vnet_hdr, tso = self._open_tun()
                configure_tun(name, self.tun_addr, self.mtu, self.network)
            except FlannelError as e:
                if tun >= 0:
                    os.close(tun)
                self._tun_problem = f"{gone}: {e}"
                if str(e) != logged:     # once per distinct error, not every attempt
                    log.warning("%s; trying again every %.0f s", e, RECREATE_PAUSE_MS / 1000)
                    logged = str(e)
                pauser.poll(RECREATE_PAUSE_MS)
                continue
            if self._stopping:           # stop() gave up waiting for us: leave nothing
                os.close(tun)
                return
            self._tun = tun
            self.offloads = {**self.offloads, "tun_vnet_hdr": vnet_hdr, "tun_tso": tso}
            self._counts["tun_recreated"] += 1
            self._tun_problem = None
            log.info("re-created %s: %s/32 mtu %d, route %s; forwarding again", name,
                     self.tun_addr, self.mtu, self.network)
            return

    def _net_unreachable(self, pkt: bytes | memoryview) -> None:
        """No route: ICMP net unreachable to the packet's source through the node's own
        stack (a raw socket). Off the fast path."""
        assert self._raw is not None
        self._icmp_error(pkt, DROP_NO_ROUTE, ICMP_DEST_UNREACH, CODE_NET_UNREACH, self._raw,
                         (str(IPv4Address(src_of(pkt))), 0), "icmp_sent_net_unreach")

    def _refuse(self, pkt: memoryview, reason: str, sender: tuple[str, int]) -> None:
        """A received packet that `accept_ipv4` refused: counted; for an exhausted TTL, an
        ICMP time exceeded too. Off the fast path."""
        if reason == DROP_TTL_EXCEEDED:
            self._time_exceeded(pkt, sender)
        else:
            self._counts[_DROP_KEYS[reason]] += 1

    def _time_exceeded(self, pkt: memoryview, sender: tuple[str, int]) -> None:
        """TTL exhausted: ICMP time exceeded to the packet's source, through the peer that
        sent it. Off the fast path."""
        assert self._sock is not None
        self._icmp_error(pkt, DROP_TTL_EXCEEDED, ICMP_TIME_EXCEEDED, CODE_TTL_EXCEEDED,
                         self._sock, sender, "icmp_sent_time_exceeded")

    def _icmp_error(self, pkt: bytes | memoryview, reason: str, type_: int, code: int,
                    sock: socket.socket, to: tuple[str, int], sent: str) -> None:
        """Count the drop; send the ICMP error (from the TUN address) if one may be sent;
        through the tunnel, sealed like any packet when the network is encrypted."""
        c = self._counts
        c[_DROP_KEYS[reason]] += 1
        icmp: bytes | None = icmp_error(pkt, type_, code, int(self.tun_addr))
        if icmp is not None and sock is self._sock and self.keyring is not None:
            icmp = self.keyring.seal(icmp, to[0])
            if icmp is None:
                c["icmp_failed"] += 1
        if icmp is None:
            return
        try:
            sock.sendto(icmp, to)
            c[sent] += 1
        except OSError:
            c["icmp_failed"] += 1


def _grow_receive_buffer(sock: socket.socket) -> None:
    """Ask for RCVBUF bytes of receive buffer: past net.core.rmem_max when privileged
    (SO_RCVBUFFORCE), else as much as rmem_max allows. The default (about 200 KiB) overflows
    in bursts while the receiving loop is busy."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)


def _describe(offloads: dict[str, bool], wanted: bool) -> str:
    """The start-up log's account of the offloads."""
    if not wanted:
        return "off (turned off by configuration)"
    on = [name for name, state in offloads.items() if state]
    off = [name for name, state in offloads.items() if not state]
    return (", ".join(on) or "none") + (f" (not available: {', '.join(off)})" if off else "")


if TYPE_CHECKING:  # the protocol, checked statically
    _: Backend = UdpBackend(iface_addr=IPv4Address(0), iface_mtu=1500, port=UDP.default_port,
                            network=IPv4Network("10.0.0.0/8"), subnet=IPv4Network("10.1.0.0/24"))
