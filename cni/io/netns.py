"""Entering a container's network namespace by path, and back."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..core.errors import INVALID_NETNS, UNKNOWN_CONTAINER, CNIError

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        if err == errno.EINVAL:
            raise CNIError(INVALID_NETNS, f"{what} is not a network namespace")
        raise CNIError(INVALID_NETNS, f"cannot enter netns {what}", os.strerror(err))


def open_netns(path: str) -> int:
    """An fd on the namespace at `path`; code 3 when it is gone, 8 when it is ours."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CNIError(UNKNOWN_CONTAINER, f"netns {path} does not exist") from None
    except OSError as e:
        raise CNIError(INVALID_NETNS, f"cannot open netns {path}", e.strerror) from None
    st, own = os.fstat(fd), os.stat("/proc/self/ns/net")
    if (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
        os.close(fd)
        raise CNIError(INVALID_NETNS, f"netns {path} is the plugin's own namespace",
                       "the runtime must run the plugin in the host namespace")
    return fd


def exists(path: str) -> bool:
    return bool(path) and os.path.exists(path)


@contextmanager
def inside(fd: int, what: str) -> Iterator[None]:
    """Run the body with this thread in the namespace `fd`; sockets made there stay there."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd, what)
        try:
            yield
        finally:
            _setns(home, "the plugin's own namespace")
    finally:
        os.close(home)
