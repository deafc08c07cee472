"""The plugin's state on disk for one network, under `<dataDir>/<network>/`, and the IP
reservations in it, in host-local's layout: `<dataDir>/<network>/<ip>` per IP.

`StateDir` is the network's directory and the lock every writer of it takes (`lock`, an
flock over the IP reservations and the attachment records alike); whoever takes the lock
first removes the temporaries a killed writer left (`files.sweep`). `IPStore` holds the
reservations: each file holds `<containerID>\\r\\n<ifname>` and appears with that content
whole (written aside, then hard-linked into place: exclusive like O_EXCL, never empty);
`last_reserved_ip.0` remembers the round-robin position. The attachment records are
`records.RecordStore`'s. A network name too long for a file name is shortened with a
digest (`attachment.fit_filename`).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from ..core.attachment import Attachment, fit_filename
from ..core.errors import IO_FAILURE, CNIError
from . import files

if TYPE_CHECKING:
    from ..core.ipam import Store

LAST_RESERVED = "last_reserved_ip.0"
RECORDS = "attachments"   # the records' directory, inside the network's
FILE_LIMIT = 1 << 20      # a reservation or record holds IDs of at most ~128 KiB (env limit)


class StateDir:
    """`<dataDir>/<network>/` and its lock."""

    def __init__(self, data_dir: str, network: str) -> None:
        self.dir = os.path.join(data_dir, fit_filename(network))
        self.records = os.path.join(self.dir, RECORDS)

    def exists(self) -> bool:
        return os.path.isdir(self.dir)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the lock for the body, creating the directories first."""
        try:
            os.makedirs(self.records, mode=0o755, exist_ok=True)
            fd = files.open_regular(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT)
        except OSError as e:
            raise CNIError(IO_FAILURE, f"cannot open IPAM store {self.dir}",
                           e.strerror or str(e)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            files.sweep(self.dir)
            files.sweep(self.records)
            yield
        finally:
            os.close(fd)


class IPStore:
    """The `ipam.Store` protocol on disk; the caller holds the `StateDir` lock to change it."""

    def __init__(self, state: StateDir) -> None:
        self.dir = state.dir

    def reserve(self, ip: IPv4Address, owner: Attachment) -> bool:
        return files.create(os.path.join(self.dir, str(ip)),
                            f"{owner.container_id}\r\n{owner.ifname}".encode())

    def last_reserved(self) -> IPv4Address | None:
        try:
            return IPv4Address(read_text(os.path.join(self.dir, LAST_RESERVED)).strip())
        except ValueError:
            return None

    def set_last_reserved(self, ip: IPv4Address) -> None:
        files.replace(os.path.join(self.dir, LAST_RESERVED), str(ip).encode())

    def reservations(self) -> dict[IPv4Address, Attachment | None]:
        out: dict[IPv4Address, Attachment | None] = {}
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return out
        for name in names:
            try:
                ip = IPv4Address(name)
            except ValueError:
                continue
            out[ip] = _owner(os.path.join(self.dir, name))
        return out

    def release(self, ip: IPv4Address) -> None:
        try:
            os.unlink(os.path.join(self.dir, str(ip)))
        except FileNotFoundError:
            pass


def read_text(path: str) -> str:
    """A state file's text; "" when it is gone, unreadable, not a regular file or huge."""
    try:
        return files.read_bytes(path, FILE_LIMIT).decode(errors="replace")
    except OSError:
        return ""


def _owner(path: str) -> Attachment | None:
    lines = read_text(path).strip().splitlines()
    if not lines:
        return None
    return Attachment(lines[0].strip(), lines[1].strip() if len(lines) > 1 else "")


if TYPE_CHECKING:
    _: Store = IPStore(StateDir("", ""))     # mypy holds IPStore to the protocol
