"""Reservations on disk, host-local's layout: `<dataDir>/<network>/<ip>` per IP.

Each reservation file holds `<containerID>\\r\\n<ifname>` and appears with that content
whole (written aside, then hard-linked into place: exclusive like O_EXCL, never empty);
`last_reserved_ip.0` remembers the round-robin position; `lock` is the flock every
writer takes. Attachment records live in `<dataDir>/<network>/attachments/
<containerID>:<ifname>`. A network name or record name too long for a file name is
shortened with a digest (`attachment.fit_filename`). Whoever takes the lock first
removes the temporaries a killed writer left (`files.sweep`).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address

from ..core.attachment import Record, fit_filename, record_filename, record_from_json
from ..core.errors import IO_FAILURE, CNIError
from ..core.netconf import Attachment
from . import files

LAST_RESERVED = "last_reserved_ip.0"
FILE_LIMIT = 1 << 20      # a reservation or record holds IDs of at most ~128 KiB (env limit)


class DiskStore:
    def __init__(self, data_dir: str, network: str) -> None:
        self.dir = os.path.join(data_dir, fit_filename(network))
        self.records = os.path.join(self.dir, "attachments")

    def exists(self) -> bool:
        return os.path.isdir(self.dir)

    @contextmanager
    def locked(self) -> Iterator[DiskStore]:
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
            yield self
        finally:
            os.close(fd)

    # --- the ipam.Store protocol -------------------------------------------------------
    def reserve(self, ip: IPv4Address, owner: Attachment) -> bool:
        return files.create(os.path.join(self.dir, str(ip)),
                            f"{owner.container_id}\r\n{owner.ifname}".encode())

    def last_reserved(self) -> IPv4Address | None:
        try:
            return IPv4Address(_read(os.path.join(self.dir, LAST_RESERVED)).strip())
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

    # --- attachment records ------------------------------------------------------------
    def record_path(self, owner: Attachment) -> str:
        return os.path.join(self.records, record_filename(owner))

    def write_record(self, record: Record) -> None:
        files.replace(self.record_path(record.owner), record.to_json().encode())

    def read_record(self, owner: Attachment) -> Record | None:
        record = record_from_json(_read(self.record_path(owner)))
        return record if record is not None and record.owner == owner else None

    def remove_record(self, owner: Attachment) -> None:
        try:
            os.unlink(self.record_path(owner))
        except FileNotFoundError:
            pass

    def all_records(self) -> list[Record]:
        try:
            names = os.listdir(self.records)
        except FileNotFoundError:
            return []
        found = (record_from_json(_read(os.path.join(self.records, n)))
                 for n in names if not n.startswith("."))
        return [r for r in found if r is not None]


def _read(path: str) -> str:
    """A store file's text; "" when it is gone, unreadable, not a regular file or huge."""
    try:
        return files.read_bytes(path, FILE_LIMIT).decode(errors="replace")
    except OSError:
        return ""


def _owner(path: str) -> Attachment | None:
    lines = _read(path).strip().splitlines()
    if not lines:
        return None
    return Attachment(lines[0].strip(), lines[1].strip() if len(lines) > 1 else "")
