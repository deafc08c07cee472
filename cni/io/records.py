"""Attachment records on disk: `<dataDir>/<network>/attachments/<containerID>:<ifname>`,
each a `Record`'s JSON, replaced whole (never visible half-written). A record name too
long for a file name is shortened with a digest (`attachment.record_filename`). Writers
hold the network's `store.StateDir` lock, the one the IP reservations are changed under.
"""

from __future__ import annotations

import os

from ..core.attachment import Attachment, Record, record_filename, record_from_json
from . import files
from .store import StateDir, read_text


class RecordStore:
    def __init__(self, state: StateDir) -> None:
        self.dir = state.records

    def path(self, owner: Attachment) -> str:
        return os.path.join(self.dir, record_filename(owner))

    def write(self, record: Record) -> None:
        files.replace(self.path(record.owner), record.to_json().encode())

    def read(self, owner: Attachment) -> Record | None:
        record = record_from_json(read_text(self.path(owner)))
        return record if record is not None and record.owner == owner else None

    def remove(self, owner: Attachment) -> None:
        try:
            os.unlink(self.path(owner))
        except FileNotFoundError:
            pass

    def all(self) -> list[Record]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        found = (record_from_json(read_text(os.path.join(self.dir, n)))
                 for n in names if not n.startswith("."))
        return [r for r in found if r is not None]
