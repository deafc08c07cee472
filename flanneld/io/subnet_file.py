"""Reads the previous subnet file, writes the new one atomically (same-directory rename), so
the CNI plugin never sees a half-written file, and reads it back exactly to check it."""

from __future__ import annotations

import os
from pathlib import Path


def read(path: str) -> str:
    """The file's text, "" when it does not exist or cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def current(path: str) -> str | None:
    """The file's text exactly (no newline translation), None when it does not exist;
    OSError when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            return f.read()
    except FileNotFoundError:
        return None


def write(path: str, text: str) -> None:
    """Replace the file with `text` (mode 0644), creating its directory (0755) if needed."""
    target = Path(path)
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
