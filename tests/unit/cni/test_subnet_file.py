"""cni.io.subnet_file: reading flanneld's subnet file, and which error each failure is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cni.core.errors import INVALID_NETWORK_CONFIG, TRY_AGAIN_LATER, CNIError
from cni.io import subnet_file

TEXT = ("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1472\n"
        "FLANNEL_IPMASQ=false\n")


def test_a_file_is_read_and_parsed(tmp_path: Path) -> None:
    path = tmp_path / "subnet.env"
    path.write_text(TEXT)
    env = subnet_file.load(str(path))
    assert (str(env.subnet), env.mtu, env.ipmasq) == ("10.244.1.0/24", 1472, False)


def test_a_missing_file_is_try_again_later(tmp_path: Path) -> None:
    with pytest.raises(CNIError) as e:
        subnet_file.load(str(tmp_path / "subnet.env"))
    assert e.value.code == TRY_AGAIN_LATER
    assert e.value.msg == f"subnet file {tmp_path / 'subnet.env'} does not exist yet"


@pytest.mark.parametrize("kind", ["fifo", "directory", "huge", "not utf-8"])
def test_what_is_not_a_small_regular_utf8_file_is_invalid(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "subnet.env"
    if kind == "fifo":
        os.mkfifo(path)           # read without O_NONBLOCK, this would hang
    elif kind == "directory":
        path.mkdir()
    elif kind == "huge":
        path.write_text("# padding\n" * 10_000 + TEXT)
    else:
        path.write_bytes(b"\xff" + TEXT.encode())
    with pytest.raises(CNIError) as e:
        subnet_file.load(str(path))
    assert (e.value.code, e.value.msg) == (INVALID_NETWORK_CONFIG, f"invalid subnet file {path}")
