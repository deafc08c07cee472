"""Reads the previous subnet file, writes the new one atomically (same-directory rename), so
the CNI plugin never sees a half-written file, and reads it back exactly to check it,
without blocking on whatever may have been put in its place."""

from __future__ import annotations

import os
import stat
from pathlib import Path

LIMIT = 64 << 10     # bytes read back; the file holds about 100


def read(path: str) -> str:
    """The file's text, "" when it does not exist or cannot be read."""
    try:
        return current(path) or ""
    except OSError:
        return ""


def current(path: str) -> str | None:
    """The file's text exactly (no newline translation), None when it does not exist;
    OSError when it cannot be read. It is opened without blocking and only a regular file
    is read, at most LIMIT bytes: a FIFO, a device or a huge file put in its place reads as
    "" (not what was written, so it is written again) and never stalls the daemon."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        data = os.read(fd, LIMIT + 1)
    finally:
        os.close(fd)
    return "" if len(data) > LIMIT else data.decode("utf-8", errors="replace")


def write(path: str, text: str) -> None:
    """Replace the file with `text` (mode 0644), creating its directory (0755) if needed."""
    target = Path(path)
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    # O_NONBLOCK|O_NOFOLLOW: a FIFO or a link planted at the temporary name fails at once.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK | os.O_NOFOLLOW,
                 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
