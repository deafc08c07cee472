"""flanneld.io.keyfile on real files: made once with mode 0600 and kept, and every file
that cannot be trusted or read refused with a message naming it."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from flanneld.core.errors import ConfigError
from flanneld.io.keyfile import load_or_create

KEY = bytes(range(32))


def test_a_missing_key_is_made_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "udp.key"
    key, made = load_or_create(str(path), lambda n: KEY[:n])
    assert (key, made) == (KEY, True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_bytes() == base64.b64encode(KEY) + b"\n"
    again, made = load_or_create(str(path), lambda n: bytes(n))
    assert (again, made) == (KEY, False)


def test_a_key_written_by_wg_genkey_is_read(tmp_path: Path) -> None:
    path = tmp_path / "udp.key"
    path.write_text(base64.b64encode(KEY).decode() + "\n")
    path.chmod(0o600)
    assert load_or_create(str(path)) == (KEY, False)


@pytest.mark.parametrize(("content", "mode", "message"), [
    (base64.b64encode(KEY) + b"\n", 0o644, "may be read by others \\(mode 0644\\); chmod 600"),
    (base64.b64encode(KEY) + b"\n", 0o640, "may be read by others"),
    (b"not base64!\n", 0o600, "does not hold a base64 X25519 private key"),
    (base64.b64encode(KEY[:16]) + b"\n", 0o600, "does not hold"),
    (b"", 0o600, "does not hold"),
    (b"A" * 10000, 0o600, "does not hold"),
])
def test_a_key_file_that_cannot_be_used_is_refused(tmp_path: Path, content: bytes, mode: int,
                                                   message: str) -> None:
    path = tmp_path / "udp.key"
    path.write_bytes(content)
    path.chmod(mode)
    with pytest.raises(ConfigError, match=message):
        load_or_create(str(path))
    assert path.read_bytes() == content  # never replaced


def test_a_fifo_a_directory_or_a_link_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo, folder, link = tmp_path / "fifo", tmp_path / "dir", tmp_path / "link"
    os.mkfifo(fifo, 0o600)
    folder.mkdir(mode=0o700)
    target = tmp_path / "real"
    target.write_text(base64.b64encode(KEY).decode())
    target.chmod(0o600)
    link.symlink_to(target)
    for path, message in ((fifo, "not a regular file"), (folder, "not a regular file"),
                          (link, "cannot read the key file")):
        with pytest.raises(ConfigError, match=message):
            load_or_create(str(path))


def test_a_key_file_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "udp.key"
    path.write_text(base64.b64encode(KEY).decode())
    path.chmod(0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(ConfigError, match="belongs to uid 65534"):
        load_or_create(str(path))


def test_a_path_that_cannot_hold_a_key_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="key file .*/file/udp.key: Not a directory"):
        load_or_create(str(blocker / "udp.key"))
