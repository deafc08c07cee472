"""flanneld's entry point: every bad flag, etcd's included, exits 2 before etcd is touched."""

from __future__ import annotations

import pytest

from flanneld.__main__ import main


@pytest.mark.parametrize("args, says", [
    (["--etcd-endpoints=ftp://x"], "is not an http:// or https:// URL"),
    (["--etcd-certfile=/no/such.pem"], "given without a keyfile"),
    (["--etcd-username=u"], "username and password go together"),
    (["--etcd-endpoints=https://127.0.0.1:2379", "--etcd-cafile=/no/such/ca.pem"],
     "cannot read the etcd CA file"),
    (["--healthz-port=70000"], "is not a port number"),
])
def test_bad_flags_exit_2(args, says, capsys, tmp_path) -> None:
    assert main([*args, f"--subnet-file={tmp_path / 'subnet.env'}"]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "subnet.env").exists()
