"""Reading and writing the plugin's files so that no input can block it and no crash can
leave a file half-made.

Reads open without blocking (a FIFO or a device given as a path must not hang the call),
accept regular files only and stop at a size limit. Writes go to a temporary file in the
same directory first, then into place with one system call: `replace` renames it over the
target, `create` hard-links it to a name that must not exist yet (exclusive, like
O_EXCL, but the file appears with its whole content). A crash can leave only a temporary
(`.<name>.<pid>.tmp`); `sweep` removes those, and is called by whoever holds the lock that
every writer of that directory holds.
"""

from __future__ import annotations

import os
import stat

TMP_SUFFIX = ".tmp"

_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket",
          stat.S_IFDIR: "a directory"}


class NotRegular(OSError):
    """The path names something other than a regular file (or one over the limit)."""


def kind_of(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def open_regular(path: str, flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
    """An fd on `path`, opened without blocking; NotRegular unless it is a regular file.
    FileNotFoundError and other OSErrors pass through."""
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY, mode)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegular(f"{kind_of(mode)}, not a regular file")
    return fd


def read_bytes(path: str, limit: int) -> bytes:
    """The content of the regular file `path`; NotRegular if it is larger than `limit`."""
    fd = open_regular(path)
    try:
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, 1 << 16))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        raise NotRegular(f"larger than {limit} bytes")
    finally:
        os.close(fd)


def _temporary(path: str, data: bytes) -> str:
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{os.getpid()}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
                 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def replace(path: str, data: bytes) -> None:
    """Put `data` at `path`, replacing what is there, never visible half-written."""
    tmp = _temporary(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def create(path: str, data: bytes) -> bool:
    """Create `path` holding `data` unless it exists (then False, nothing changed)."""
    tmp = _temporary(path, data)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def sweep(directory: str) -> None:
    """Remove the temporaries a killed writer left in `directory` (call with its lock)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith(".") and name.endswith(TMP_SUFFIX):
            try:
                os.unlink(os.path.join(directory, name))
            except FileNotFoundError:
                pass
