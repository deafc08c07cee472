"""cni.io.files on a real file system (a temporary directory): reads that cannot block,
writes that cannot be seen half-made."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cni.io import files


@pytest.mark.parametrize("kind", ["fifo", "directory", "/dev/zero"])
def test_reads_refuse_what_is_not_a_regular_file_without_blocking(kind: str,
                                                                   tmp_path: Path) -> None:
    path = tmp_path / "x"
    if kind == "fifo":
        os.mkfifo(path)           # opening it for reading would block without O_NONBLOCK
    elif kind == "directory":
        path.mkdir()
    else:
        path = Path(kind)
    with pytest.raises(files.NotRegular):
        files.read_bytes(str(path), 100)


def test_reads_stop_at_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"a" * 101)
    with pytest.raises(files.NotRegular, match="larger than 100 bytes"):
        files.read_bytes(str(path), 100)
    assert files.read_bytes(str(path), 101) == b"a" * 101


def test_create_is_exclusive_and_whole(tmp_path: Path) -> None:
    path = str(tmp_path / "10.0.0.2")
    assert files.create(path, b"first")
    assert not files.create(path, b"second")
    assert Path(path).read_bytes() == b"first"
    assert sorted(os.listdir(tmp_path)) == ["10.0.0.2"]      # no temporary left


def test_replace_and_sweep(tmp_path: Path) -> None:
    path = str(tmp_path / "record")
    files.replace(path, b"one")
    files.replace(path, b"two")
    assert Path(path).read_bytes() == b"two"
    (tmp_path / ".record.12345.tmp").write_text("torn")          # a killed writer's
    (tmp_path / ".hidden").write_text("someone else's")
    files.sweep(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == [".hidden", "record"]
