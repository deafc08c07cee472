"""Entering a container's network namespace by path, and back."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from ..core.errors import INVALID_NETNS, UNKNOWN_CONTAINER, CNIError
from .files import kind_of

CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703     # ioctl on an nsfs file: its CLONE_NEW* type
_libc = ctypes.CDLL(None, use_errno=True)
NETNS_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
# Paths a relaying client opened already (`serve`): path -> its fd, or -errno of the open.
_handed: dict[str, int] = {}


def hand_over(path: str, fd_or_errno: int) -> None:
    """In flanneld's worker: `open_netns(path)` takes what the client's open of `path`
    gave (an fd, or -errno), so the checks below see what the client saw."""
    _handed[path] = fd_or_errno


def forget_handed() -> None:
    """In flanneld's worker, once a call is done: the next call's paths are its own."""
    _handed.clear()


def _open(path: str) -> int:
    given = _handed.get(path)
    if given is None:
        return os.open(path, NETNS_FLAGS)
    if given < 0:
        raise OSError(-given, os.strerror(-given), path)
    return os.dup(given)


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        if err == errno.EINVAL:
            raise CNIError(INVALID_NETNS, f"{what} is not a network namespace")
        raise CNIError(INVALID_NETNS, f"cannot enter netns {what}", os.strerror(err))


def open_netns(path: str) -> int:
    """An fd on the namespace at `path`; code 3 when it is gone, 8 when it is ours."""
    try:
        # Without blocking: a FIFO given as the path must not hang the call.
        fd = _open(path)
    except FileNotFoundError:
        raise CNIError(UNKNOWN_CONTAINER, f"netns {path} does not exist") from None
    except OSError as e:
        raise CNIError(INVALID_NETNS, f"cannot open netns {path}", e.strerror or "") from None
    st, own = os.fstat(fd), os.stat("/proc/self/ns/net")
    kind = _namespace_kind(fd, st.st_mode)
    if kind:
        os.close(fd)
        raise CNIError(INVALID_NETNS, f"{path} is not a network namespace", f"it is {kind}")
    if (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
        os.close(fd)
        raise CNIError(INVALID_NETNS, f"netns {path} is the plugin's own namespace",
                       "the runtime must run the plugin in the host namespace")
    return fd


def _namespace_kind(fd: int, mode: int) -> str:
    """"" for a network namespace, else what the file is instead."""
    if not stat.S_ISREG(mode):     # a namespace is a regular file of nsfs
        return kind_of(mode)
    try:
        if fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET:
            return ""
        return "a namespace of another type"
    except OSError:
        return "a file that is not a namespace"


def enter(fd: int) -> None:
    """Move the calling thread into the network namespace `fd` until it enters another
    (flanneld's worker: for a call, and back after it)."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def inside(fd: int, what: str) -> Iterator[None]:
    """Run the body with this thread in the namespace `fd`; sockets made there stay there.
    It returns to the namespace this thread was in (the process's, for the plugin)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd, what)
        try:
            yield
        finally:
            _setns(home, "the plugin's own namespace")
    finally:
        os.close(home)
