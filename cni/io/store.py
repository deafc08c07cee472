"""Reservations on disk, host-local's layout: `<dataDir>/<network>/<ip>` per IP.

Each reservation file is created with O_EXCL (mode 0600) and holds
`<containerID>\r\n<ifname>`; `last_reserved_ip.0` remembers the round-robin
position; `lock` is the flock every writer takes. Attachment records live in
`<dataDir>/<network>/attachments/<containerID>:<ifname>`.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address
from pathlib import Path

from ..core.attachment import Record, record_filename, record_from_json
from ..core.errors import IO_FAILURE, CNIError
from ..core.netconf import Attachment

LAST_RESERVED = "last_reserved_ip.0"


class DiskStore:
    def __init__(self, data_dir: str, network: str) -> None:
        self.dir = Path(data_dir) / network
        self.records = self.dir / "attachments"

    @contextmanager
    def locked(self) -> Iterator[DiskStore]:
        try:
            self.records.mkdir(mode=0o755, parents=True, exist_ok=True)
            fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise CNIError(IO_FAILURE, f"cannot open IPAM store {self.dir}", str(e)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self
        finally:
            os.close(fd)

    # --- the ipam.Store protocol -------------------------------------------------------
    def reserve(self, ip: IPv4Address, owner: Attachment) -> bool:
        try:
            fd = os.open(self.dir / str(ip), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(f"{owner.container_id}\r\n{owner.ifname}")
        return True

    def last_reserved(self) -> IPv4Address | None:
        try:
            return IPv4Address((self.dir / LAST_RESERVED).read_text().strip())
        except (OSError, ValueError):
            return None

    def set_last_reserved(self, ip: IPv4Address) -> None:
        _write_atomic(self.dir / LAST_RESERVED, str(ip))

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
            out[ip] = _owner(self.dir / name)
        return out

    def release(self, ip: IPv4Address) -> None:
        (self.dir / str(ip)).unlink(missing_ok=True)

    # --- attachment records ------------------------------------------------------------
    def write_record(self, record: Record) -> None:
        _write_atomic(self.records / record_filename(record.owner), record.to_json())

    def read_record(self, owner: Attachment) -> Record | None:
        try:
            return record_from_json((self.records / record_filename(owner)).read_text())
        except OSError:
            return None

    def remove_record(self, owner: Attachment) -> None:
        (self.records / record_filename(owner)).unlink(missing_ok=True)

    def all_records(self) -> list[Record]:
        try:
            names = os.listdir(self.records)
        except FileNotFoundError:
            return []
        found = (record_from_json(_read(self.records / n)) for n in names if ":" in n)
        return [r for r in found if r is not None]


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _owner(path: Path) -> Attachment | None:
    lines = _read(path).strip().splitlines()
    if not lines:
        return None
    return Attachment(lines[0].strip(), lines[1].strip() if len(lines) > 1 else "")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
