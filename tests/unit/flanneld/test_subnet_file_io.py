"""flanneld.io.subnet_file on a real file system: reading back never blocks or balloons."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flanneld.io import subnet_file

TEXT = "FLANNEL_NETWORK=10.244.0.0/16\r\nFLANNEL_SUBNET=10.244.1.1/24\n"


def test_current_is_exact_and_none_when_missing(tmp_path: Path) -> None:
    path = tmp_path / "subnet.env"
    assert subnet_file.current(str(path)) is None and subnet_file.read(str(path)) == ""
    path.write_bytes(TEXT.encode())
    assert subnet_file.current(str(path)) == TEXT


@pytest.mark.parametrize("kind", ["fifo", "huge"])
def test_something_else_in_its_place_reads_as_empty_without_blocking(kind: str,
                                                                     tmp_path: Path) -> None:
    path = tmp_path / "subnet.env"
    if kind == "fifo":
        os.mkfifo(path)       # a plain open() for reading would wait for a writer forever
    else:
        path.write_text("#" * (subnet_file.LIMIT + 1))
    assert subnet_file.current(str(path)) == "" and subnet_file.read(str(path)) == ""
    subnet_file.write(str(path), TEXT)         # and it is replaced by the real file
    assert path.read_bytes() == TEXT.encode()


def test_a_fifo_at_the_temporary_name_fails_at_once(tmp_path: Path) -> None:
    path = tmp_path / "subnet.env"
    os.mkfifo(tmp_path / f".subnet.env.{os.getpid()}.tmp")
    with pytest.raises(OSError):
        subnet_file.write(str(path), TEXT)
    assert not path.exists()
