"""The warm path: hand the call to flanneld's CNI worker (`serve`) and print its answer.

Loads only `_socket` and `io` (the relay message is `core.relay`'s): a relayed call costs
the interpreter's start and a round trip, not the plugin's imports. Whenever the worker
does not answer (no socket, nobody listening, a worker that died or declined, a reply
past the deadline), the caller does the call itself with the same stdin: a call never
fails because the daemon is away.
"""

from __future__ import annotations

import _socket
import io
import os
import sys

from .core import relay, version

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

SOCKET = "/run/flannel/cni.sock"     # PYFLANNEL_SOCKET; "" relays nothing
CONFIG_LIMIT = 4 << 20               # as `call.CONFIG_LIMIT`: the worker refuses more
DEFAULT_TIMEOUT, MARGIN = 60.0, 15.0  # the call's own bound, and the rollback's grace on it
NETNS_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


class Relayed:
    """`code`: the exit code of a relayed call, None when it was not; `stdin`: the config
    for the caller to do the call with itself."""

    __slots__ = ("code", "stdin")

    def __init__(self, code: int | None, stdin: BinaryIO) -> None:
        self.code = code
        self.stdin = stdin


def _timeout(env: dict[str, str]) -> float | None:
    """The call's bound; None when PYFLANNEL_TIMEOUT is invalid (the cold call says so)."""
    try:
        seconds = float(env.get("PYFLANNEL_TIMEOUT") or DEFAULT_TIMEOUT)
    except ValueError:
        return None
    return seconds if 0 < seconds <= 3600 else None


def _read(stdin: BinaryIO, seconds: float) -> bytes | None:
    """stdin up to CONFIG_LIMIT + 1 bytes; None when it does not end within `seconds`."""
    import select
    import time
    deadline = time.monotonic() + seconds
    fd, chunks, size = stdin.fileno(), [], 0
    while size <= CONFIG_LIMIT:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, min(1 << 16, CONFIG_LIMIT + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _gave_up(seconds: float) -> int:
    """The cold call's answer to a stdin that never ends (rare: loads what it needs)."""
    from .call import json_line
    from .core.errors import TRY_AGAIN_LATER, CNIError
    sys.stdout.write(json_line(CNIError(TRY_AGAIN_LATER, f"pyflannel gave up after {seconds:g} s"
                                    " (in read)", "set PYFLANNEL_TIMEOUT for a longer bound")
                           .to_dict(version.CURRENT)))
    sys.stdout.flush()
    return 1


def _descriptors(env: dict[str, str]) -> tuple[list[int], int]:
    fds = [os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC),
           os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)]
    path = env.get("CNI_NETNS", "")
    if env.get("CNI_COMMAND") not in relay.OPENS_NETNS or not path:
        return fds, 0
    try:
        fds.append(os.open(path, NETNS_FLAGS))
    except OSError as e:
        return fds, e.errno or 1
    return fds, 0


def _exchange(sock: _socket.socket, env: dict[str, str], data: bytes) -> bytes:
    fds, netns_errno = _descriptors(env)
    try:
        request = relay.encode({k: os.fsencode(v) for k, v in relay.relayed_env(env).items()},
                               netns_errno, data)
        rights = b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds)
        sent = sock.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
    finally:
        for fd in fds:
            os.close(fd)
    view = memoryview(request)[sent:]
    while view:
        view = view[sock.send(view):]
    sock.shutdown(_socket.SHUT_WR)
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def relay_call(env: dict[str, str], stdin: BinaryIO) -> Relayed:
    path = env.get("PYFLANNEL_SOCKET", SOCKET)
    seconds = _timeout(env)
    if not path or seconds is None:
        return Relayed(None, stdin)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        try:
            sock.connect(path)
        except OSError:
            return Relayed(None, stdin)
        data = _read(stdin, seconds)
        if data is None:
            return Relayed(_gave_up(seconds), stdin)
        sock.settimeout(seconds + MARGIN)
        try:
            got = relay.read_answer(_exchange(sock, env, data))
        except OSError:
            got = None
    finally:
        sock.close()
    if got is None:
        return Relayed(None, io.BytesIO(data))
    sys.stdout.buffer.write(got[1])
    sys.stdout.buffer.flush()
    return Relayed(got[0], stdin)
