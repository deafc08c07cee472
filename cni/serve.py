"""`pyflannel --serve PATH`: flanneld's CNI worker, the warm path's other end.

flanneld starts this as its child. It loads everything a call needs once (the commands,
netlink, the state store), listens on the unix socket PATH (mode 0600: root only) and
hands each connection to a worker process forked from it: a call costs neither a plugin's
start-up nor a fork. Workers wait between calls on a socket pair with the server (for the
connection's descriptor; they say when they are ready again), as many as `core.pool`
keeps, each for at most `pool.CALLS_PER_WORKER` calls. One is forked ahead while none
waits and no call runs; a call that finds none waiting gets one forked for it.
A worker enters the client's network namespace (setns: CAP_SYS_ADMIN, which acting in
a pod's namespace needs anyway) and runs the plugin's own call (`call.execute`) with the
client's environment, stdin and CNI_NETNS descriptor: the same checks, the same
deadline (SIGALRM), the same errors.

It refuses a peer that is not root, reads the request within READ_TIMEOUT and within
the plugin's limits, and declines ("do it yourself") a call whose subnet file or data
directory it does not see as the client does (flanneld in a container without those
host paths mounted), or whose `ip_forward` step it could not do (off, and /proc/sys
read-only in flanneld's container). A worker serves one call at a time: a client that
stalls or sends garbage holds up only its own worker. At most MAX_WORKERS exist at once;
past that a client is told to do the call itself. Between calls a worker puts back what a
call changes in it (its namespace, the client's descriptors, the signals the call armed,
the sockets of ADD's announcements); a call that ends in an unexpected failure ends its
worker instead.

A worker is tied to its client while the call runs: when the client's end closes before
the answer (the runtime killed the plugin), the worker exits at once, leaving what a
killed plugin leaves, for the runtime's DEL. The server exits when its parent (flanneld)
is gone, on SIGTERM, or SIGINT; workers that are running then finish their calls, and
the waiting ones exit.
"""

from __future__ import annotations

import errno
import fcntl
import importlib
import io
import os
import select
import signal
import socket
import stat
import struct
import sys
import time
from types import FrameType

from . import call
from .core import pool, relay
from .core.netconf import NetConf
from .io import link, netns

MAX_WORKERS = 64
READY = b"r"                # a worker to the server: waiting for the next call
READ_TIMEOUT = 10.0         # seconds a client has to send its whole request
REQUEST_LIMIT = relay.HEADER + relay.ENV_LIMIT + call.CONFIG_LIMIT + 1
_CREDENTIALS = struct.Struct("=iII")     # struct ucred: pid, uid, gid


def _log(text: str) -> None:
    sys.stderr.write(f"pyflannel --serve: {text}\n")
    sys.stderr.flush()


def _same_file(root_fd: int, path: str) -> bool:
    """Whether `path` is the same file here and under the client's root: compared at the
    deepest part of it that exists here (what is below it is then the same too)."""
    here = os.path.abspath(path)
    while True:
        try:
            mine = os.stat(here)
            break
        except FileNotFoundError:
            parent = os.path.dirname(here)
            if parent == here:
                return False
            here = parent
        except OSError:
            return False
    try:
        theirs = os.stat(f"/proc/self/fd/{root_fd}{here}")
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def _forwarding_settable() -> bool:
    """Whether ADD's `ip_forward` step can succeed here: it is on, or this process may turn
    it on (a container's /proc/sys is read-only; the plugin on the host may write it)."""
    try:
        with open(link.FORWARDING) as f:
            if f.read().strip() == "1":
                return True
    except OSError:
        return False
    return os.access(link.FORWARDING, os.W_OK)


def _receive(conn: socket.socket, fds: list[int]) -> bytes:
    """The request's bytes; the descriptors it carried are added to `fds`."""
    deadline = time.monotonic() + READ_TIMEOUT
    conn.settimeout(READ_TIMEOUT)
    data, ancillary, flags, _ = conn.recvmsg(1 << 16, socket.CMSG_SPACE(12))
    for level, kind, raw in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.extend(struct.unpack(f"={len(raw) // 4}i", raw[:len(raw) // 4 * 4]))
    if flags & socket.MSG_CTRUNC:
        raise relay.BadRequest("more descriptors than a request carries")
    chunks, size = [data], len(data)
    while data:
        conn.settimeout(max(0.0, deadline - time.monotonic()) or 0.001)
        data = conn.recv(1 << 16)
        chunks.append(data)
        size += len(data)
        if size > REQUEST_LIMIT:
            raise relay.BadRequest(f"a request of more than {REQUEST_LIMIT} bytes")
    return b"".join(chunks)


class _Tie:
    """The worker dies with its client until it answers, as the plugin's own process would:
    a runtime that kills the plugin (its timeout) and then calls DEL must not find the call
    still going. The kernel signals (SIGIO) when the client's end closes."""

    def __init__(self) -> None:
        self.answering = False

    def answer(self, conn: socket.socket, data: bytes) -> None:
        """The last thing the call sends; from here the client may go."""
        self.answering = True
        conn.settimeout(READ_TIMEOUT)
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)      # the client has its answer: it need not wait


def _tie_to_client(conn: socket.socket) -> _Tie:
    tie = _Tie()

    def gone(signum: int, frame: FrameType | None) -> None:
        if not tie.answering and _closed(conn):
            os._exit(1)
    signal.signal(signal.SIGIO, gone)
    fcntl.fcntl(conn.fileno(), fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(conn.fileno(), fcntl.F_SETFL,
                fcntl.fcntl(conn.fileno(), fcntl.F_GETFL) | os.O_ASYNC)
    if _closed(conn):            # it went before the signal was armed
        os._exit(1)
    return tie


def _closed(conn: socket.socket) -> bool:
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLHUP | select.POLLERR)
    return any(event & (select.POLLHUP | select.POLLERR) for _, event in poller.poll(0))


def _work(conn: socket.socket) -> None:
    """One call, in a worker. What it was given (the client's descriptors) is closed when
    it returns; an exception leaves the worker unfit for another call."""
    fds: list[int] = []
    try:
        _call(conn, fds)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)         # the call's deadline, if still set
        signal.signal(signal.SIGIO, signal.SIG_IGN)     # untied: the call is over
        netns.forget_handed()
        for fd in fds:
            os.close(fd)


def _call(conn: socket.socket, fds: list[int]) -> None:
    pid, uid, _ = _CREDENTIALS.unpack(
        conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size))
    if uid != 0:
        _log(f"refused a call from pid {pid}, uid {uid}: only root may call")
        return
    try:
        data = _receive(conn, fds)
        env_bytes, netns_errno, stdin = relay.decode(data)
    except (OSError, relay.BadRequest) as e:
        _log(f"dropped a request from pid {pid}: {e}")
        return
    tie = _tie_to_client(conn)
    if len(fds) < 2:
        _log(f"dropped a request from pid {pid}: no root directory and netns with it")
        return
    root = fds[0]
    try:
        netns.enter(fds[1])      # the node's namespace, as the client's
    except OSError as e:
        _log(f"cannot enter the namespace of pid {pid}: {e.strerror}; it does the call")
        tie.answer(conn, relay.YOURSELF)
        return
    env = {k: os.fsdecode(v) for k, v in env_bytes.items()}
    path = env.get("CNI_NETNS", "")
    if env.get("CNI_COMMAND") in relay.OPENS_NETNS and path:
        netns.hand_over(path, fds[2] if len(fds) > 2 else -(netns_errno or errno.EBADF))

    def here(conf: NetConf) -> bool:
        return (_same_file(root, conf.subnet_file) and _same_file(root, conf.data_dir)
                and _forwarding_settable())

    def emit(code: int, text: str) -> None:
        tie.answer(conn, relay.answer(code, text))

    try:
        call.execute(env, io.BytesIO(stdin), emit, here)
    except call.Declined:
        tie.answer(conn, relay.YOURSELF)


class Server:
    def __init__(self, path: str) -> None:
        self.path = path
        self.parent = os.getppid()
        self.home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.workers: set[int] = set()     # every worker's pid, until reaped
        self.stopping = False
        # Each worker's end of its socket pair: waiting for a call (since when), or serving.
        self.idle: list[tuple[int, socket.socket, float]] = []
        self.busy: dict[socket.socket, int] = {}
        self.sock = self._listen()

    def _listen(self) -> socket.socket:
        try:
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)     # a socket an earlier server left
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        mask = os.umask(0o177)
        try:
            sock.bind(self.path)
        finally:
            os.umask(mask)
        os.chmod(self.path, 0o600)
        sock.listen(128)
        sock.setblocking(False)
        self.inode = os.stat(self.path).st_ino
        return sock

    def stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def _reap(self) -> None:
        for pid in list(self.workers):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.workers.discard(pid)

    def serve(self) -> None:
        while not self.stopping and os.getppid() == self.parent:
            self._reap()
            if not self.idle and not self.busy:
                # The next call's worker, forked while no call runs: forked beside a call,
                # it took the call's CPU on a small node (bench/README.md).
                self.idle.append((*self._fork_worker(), time.monotonic()))
            # Every second at least, to notice a gone parent.
            readable, _, _ = select.select([self.sock, *self.busy], [], [], 1.0)
            for ours in readable:
                if ours is self.sock:
                    self._accept()
                else:
                    self._back(ours)
            for i in reversed(pool.retiring([since for _, _, since in self.idle],
                                            time.monotonic())):
                self.idle.pop(i)[1].close()      # it exits

    def _accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        with conn:
            conn.setblocking(True)
            if not self._hand_over(conn):
                try:
                    conn.sendall(relay.YOURSELF)
                except OSError:
                    pass

    def _back(self, ours: socket.socket) -> None:
        """A busy worker said it is ready for another call, or it exited."""
        pid = self.busy.pop(ours)
        try:
            ready = ours.recv(1) == READY
        except OSError:
            ready = False
        if ready and pool.keeps_waiting(len(self.idle), self.stopping):
            self.idle.append((pid, ours, time.monotonic()))
        else:
            ours.close()             # it exits, or has

    def _fork_worker(self, holding: socket.socket | None = None) -> tuple[int, socket.socket]:
        """A new worker, waiting for its first call on a socket pair (it exits when the
        server closes its end). It closes what it inherits of the server's: the listening
        socket, the other workers' pairs and `holding`, a connection being handed over."""
        ours, theirs = socket.socketpair(socket.AF_UNIX,
                                         socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            for inherited in (ours, self.sock, *self.busy, *(s for _, s, _ in self.idle),
                              *((holding,) if holding is not None else ())):
                inherited.close()
            self._be_worker(theirs)
        theirs.close()
        self.workers.add(pid)
        return pid, ours

    def _hand_over(self, conn: socket.socket) -> bool:
        """Give `conn` to a waiting worker, else to one forked for it; False when none could
        take it (too many workers, or all that were tried gone)."""
        forked = False
        while not forked:
            if self.idle:
                pid, ours, _ = self.idle.pop()
            elif len(self.workers) < MAX_WORKERS:
                pid, ours = self._fork_worker(holding=conn)
                forked = True
            else:
                return False
            try:
                socket.send_fds(ours, [b"c"], [conn.fileno()])
            except OSError:             # it died (killed): another one
                ours.close()
                continue
            self.busy[ours] = pid
            return True
        return False

    def _be_worker(self, handoff: socket.socket) -> None:
        code = 0
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            for calls in range(pool.CALLS_PER_WORKER):
                if calls:
                    try:
                        handoff.send(READY)
                    except OSError:  # the server is gone: no call will come
                        break
                _, fds, _, _ = socket.recv_fds(handoff, 1, 1)
                if not fds:          # the server closed its end
                    break
                with socket.socket(fileno=fds[0]) as conn:
                    _work(conn)
                netns.enter(self.home)
                link.drop_kept()
        except BaseException as e:  # noqa: BLE001 - a worker reports and exits, always
            _log(f"a worker failed: {type(e).__name__}: {e}")
            code = 1
        finally:
            os._exit(code)

    def close(self) -> None:
        for _, ours, _ in self.idle:
            ours.close()             # they exit
        for ours in self.busy:
            ours.close()             # they exit once their calls are done
        self.sock.close()
        try:
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except OSError:
            pass


def _preload() -> None:
    """Import what the calls need, so that workers start with it loaded: the commands, and
    `subprocess`, which `cni.io.masq` loads only when a call runs iptables."""
    for name in call.MODULES.values():
        importlib.import_module(f"cni.commands.{name}")
    importlib.import_module("subprocess")


def main(args: list[str]) -> int:
    if len(args) != 1 or not args[0].startswith("/"):
        sys.stderr.write("usage: pyflannel --serve /absolute/path/of/the/socket\n")
        return 2
    _preload()
    try:
        server = Server(args[0])
    except OSError as e:
        _log(f"cannot listen on {args[0]}: {e.strerror or e}")
        return 1
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, server.stop)
    _log(f"serving CNI calls on {args[0]} (pid {os.getpid()})")
    try:
        server.serve()
    finally:
        server.close()
    _log("stopped")
    return 0
