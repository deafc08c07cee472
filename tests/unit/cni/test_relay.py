"""The warm path's request and answer (cni.core.relay), and what the client relays."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cni import client
from cni.core import relay
from cni.io import netns

names = st.from_regex(r"(CNI|PYFLANNEL)_[A-Z_]{1,12}", fullmatch=True)
values = st.binary(max_size=64).filter(lambda b: b"\0" not in b)


@given(st.dictionaries(names, values, max_size=8), st.integers(0, 4095),
       st.binary(max_size=512))
def test_a_request_decodes_to_what_was_encoded(env, netns_errno, stdin) -> None:
    assert relay.decode(relay.encode(env, netns_errno, stdin)) == (env, netns_errno, stdin)


@pytest.mark.parametrize("data", [
    b"", b"PFW", b"XXXX" + bytes(8),                        # short, wrong magic
    b"PFW1" + (5).to_bytes(4, "big") + bytes(4) + b"CNI",    # env longer than the data
    b"PFW1" + (relay.ENV_LIMIT + 1).to_bytes(4, "big") + bytes(4),
    b"PFW1" + (4).to_bytes(4, "big") + bytes(4) + b"PATH",   # no '='
    b"PFW1" + (6).to_bytes(4, "big") + bytes(4) + b"HOME=x",  # not a relayed name
    b"PFW1" + (15).to_bytes(4, "big") + bytes(4) + b"CNI_A=1\0CNI_A=2",  # twice
])
def test_what_is_not_a_request_is_refused(data: bytes) -> None:
    with pytest.raises(relay.BadRequest):
        relay.decode(data)


def test_only_the_call_s_variables_are_relayed() -> None:
    env = {"CNI_COMMAND": "ADD", "PYFLANNEL_TIMEOUT": "5", "PATH": "/bin", "HOME": "/root"}
    assert relay.relayed_env(env) == {"CNI_COMMAND": "ADD", "PYFLANNEL_TIMEOUT": "5"}


@pytest.mark.parametrize(("data", "expected"), [
    (b"0{}\n", (0, b"{}\n")), (b"1{\"code\": 7}\n", (1, b"{\"code\": 7}\n")),
    (b"0", (0, b"")), (b"C", None), (b"", None), (b"9", None),
])
def test_an_answer_is_an_exit_code_and_stdout_or_none(data, expected) -> None:
    assert relay.read_answer(data) == expected


def test_the_client_opens_the_pod_namespace_as_the_plugin_does() -> None:
    assert client.NETNS_FLAGS == netns.NETNS_FLAGS
    assert client.CONFIG_LIMIT == __import__("cni.call").call.CONFIG_LIMIT


def test_no_socket_means_the_caller_does_the_call(tmp_path) -> None:
    stdin = open(os.devnull, "rb")
    with stdin:
        got = client.relay_call({"CNI_COMMAND": "ADD",
                                 "PYFLANNEL_SOCKET": str(tmp_path / "none.sock")}, stdin)
        assert got.code is None and got.stdin is stdin
        got = client.relay_call({"CNI_COMMAND": "ADD", "PYFLANNEL_SOCKET": ""}, stdin)
        assert got.code is None
