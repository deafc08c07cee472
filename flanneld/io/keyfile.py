"""The node's private key file for the encrypted udp mode (`--udp-key-file`).

The file holds the 32-byte X25519 private key in base64 and a newline, as `wg genkey`
writes one. It is made on first start (mode 0600, created exclusively, so two daemons
starting at once cannot both write one) and kept across restarts. A file that group or
others may read, that is not a regular file, or that does not hold a key is refused with
a ConfigError naming it, rather than used or replaced: the operator decides.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Callable
from pathlib import Path

from ..core.errors import ConfigError

KEY_SIZE = 32
LIMIT = 4096           # bytes read: a key file holds 45


def load_or_create(path: str, random_bytes: Callable[[int], bytes] = os.urandom
                   ) -> tuple[bytes, bool]:
    """The private key at `path` and whether it was made just now."""
    try:
        return _load(path), False
    except FileNotFoundError:
        pass
    key = random_bytes(KEY_SIZE)
    target = Path(path)
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the key file {path}: {e.strerror}") from None
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except FileExistsError:  # another daemon made it meanwhile: use that one
        return _load(path), False
    except OSError as e:
        raise ConfigError(f"cannot create the key file {path}: {e.strerror}") from None
    try:
        os.write(fd, base64.b64encode(key) + b"\n")
        os.fsync(fd)
    except OSError as e:
        os.close(fd)
        target.unlink(missing_ok=True)
        raise ConfigError(f"cannot write the key file {path}: {e.strerror}") from None
    os.close(fd)
    return key, True


def _load(path: str) -> bytes:
    """FileNotFoundError when absent; ConfigError when it cannot be used."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as e:  # a link (O_NOFOLLOW), a path through a file, no permission
        raise ConfigError(f"cannot read the key file {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"the key file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise ConfigError(f"the key file {path} may be read by others (mode "
                              f"{stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
        if st.st_uid != os.geteuid():
            raise ConfigError(f"the key file {path} belongs to uid {st.st_uid}, not to "
                              f"this daemon's uid {os.geteuid()}")
        data = os.read(fd, LIMIT + 1)
    finally:
        os.close(fd)
    try:
        key = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_SIZE:
        raise ConfigError(f"the key file {path} does not hold a base64 X25519 private key "
                          f"(32 bytes, as `wg genkey` writes)")
    return key
