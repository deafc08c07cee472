"""cni.core.skel: the CNI_* environment, validated as libcni's skel does."""

from __future__ import annotations

import pytest

from cni.core.errors import INVALID_ENVIRONMENT, CNIError
from cni.core.skel import Invocation, parse_args, parse_environment, validate_ifname

FULL = {"CNI_CONTAINERID": "ctr1", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0"}


def env_error(env: dict[str, str]) -> CNIError:
    with pytest.raises(CNIError) as e:
        parse_environment(env)
    assert e.value.code == INVALID_ENVIRONMENT
    return e.value


@pytest.mark.parametrize(("command", "missing"), [
    ("ADD", "CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME"),
    ("CHECK", "CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME"),
    ("DEL", "CNI_CONTAINERID,CNI_IFNAME"),
])
def test_required_variables_are_listed_in_the_message(command: str, missing: str) -> None:
    assert env_error({"CNI_COMMAND": command}).msg == f"required env variables [{missing}] missing"


@pytest.mark.parametrize(("command", "var"), [
    (c, v) for c in ("ADD", "CHECK", "DEL") for v in FULL if (c, v) != ("DEL", "CNI_NETNS")
])
@pytest.mark.parametrize("empty", [True, False])
def test_each_required_variable_missing_or_empty(command: str, var: str, empty: bool) -> None:
    env = {"CNI_COMMAND": command, **FULL}
    if empty:
        env[var] = ""
    else:
        del env[var]
    assert env_error(env).msg == f"required env variables [{var}] missing"


@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL", "STATUS", "GC", "VERSION"])
def test_complete_environment_parses(command: str) -> None:
    env = {"CNI_COMMAND": command, **FULL, "CNI_ARGS": "K=V", "CNI_PATH": "/opt/cni/bin:/x"}
    assert parse_environment(env) == Invocation(command, "ctr1", "/run/netns/x", "eth0",
                                                {"K": "V"})


@pytest.mark.parametrize("command", ["STATUS", "GC", "VERSION"])
def test_commands_without_an_attachment_need_and_check_nothing(command: str) -> None:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": "-bad", "CNI_IFNAME": "bad/name"}
    assert parse_environment(env).command == command
    assert parse_environment({"CNI_COMMAND": command}) == Invocation(command)


def test_del_without_netns() -> None:
    env = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "ctr1", "CNI_IFNAME": "eth0"}
    assert parse_environment(env).netns == ""


@pytest.mark.parametrize("command", ["", "FOO", "add", "ADD ", "DELETE"])
def test_unknown_command(command: str) -> None:
    assert env_error({"CNI_COMMAND": command, **FULL}).msg == f"unknown CNI_COMMAND: {command}"


@pytest.mark.parametrize("cid", [
    "a", "0", "ctr1", "A-b_c.d", "a..", "a-", "f" * 64, "9f86d081884c7d659a2feaa0c55ad015",
])
def test_valid_container_ids(cid: str) -> None:
    assert parse_environment({"CNI_COMMAND": "ADD", **FULL, "CNI_CONTAINERID": cid}) \
        .container_id == cid


@pytest.mark.parametrize("cid", [
    "-a", "_a", ".a", "a/b", "a:b", "a b", "a\tb", "a$", "a;b", "é", "a\x00",
    "ctr1\n",
])
@pytest.mark.parametrize("command", ["ADD", "DEL"])
def test_invalid_container_ids(command: str, cid: str) -> None:
    error = env_error({"CNI_COMMAND": command, **FULL, "CNI_CONTAINERID": cid})
    assert error.msg == "invalid CNI_CONTAINERID"
    assert repr(cid) in error.details


@pytest.mark.parametrize("name", ["eth0", "a", "x" * 15, "net1.100", "e-th_0", "...", "é" * 7])
def test_valid_ifnames(name: str) -> None:
    validate_ifname(name)
    assert parse_environment({"CNI_COMMAND": "CHECK", **FULL, "CNI_IFNAME": name}).ifname == name


@pytest.mark.parametrize(("name", "problem"), [
    ("", "is empty"),
    ("x" * 16, "is longer than 15 bytes"),
    (".", "is '.' or '..'"),
    ("..", "is '.' or '..'"),
    ("a/b", "contains '/', ':', '%', a control character or white space"),
    ("/", "contains '/', ':', '%', a control character or white space"),
    ("eth0:1", "contains '/', ':', '%', a control character or white space"),
    ("eth 0", "contains '/', ':', '%', a control character or white space"),
    ("eth0\t", "contains '/', ':', '%', a control character or white space"),
    ("\n", "contains '/', ':', '%', a control character or white space"),
    ("eth\u00a00", "contains '/', ':', '%', a control character or white space"),
    ("é" * 8, "is longer than 15 bytes"),
    ("eth%d", "contains '/', ':', '%', a control character or white space"),
    ("%", "contains '/', ':', '%', a control character or white space"),
    # UTF-8 c3 a0: the kernel's isspace() takes 0xa0 for white space
    ("eth\u00e00", "contains '/', ':', '%', a control character or white space"),
    ("eth\x0b", "contains '/', ':', '%', a control character or white space"),
    ("eth\udc80", "is not valid UTF-8"),                           # a non-UTF-8 byte
    ("x\x01", "contains '/', ':', '%', a control character or white space"),
    ("x\x7f", "contains '/', ':', '%', a control character or white space"),
])
def test_invalid_ifnames(name: str, problem: str) -> None:
    with pytest.raises(CNIError) as e:
        validate_ifname(name)
    assert (e.value.code, e.value.msg, e.value.details) == (
        INVALID_ENVIRONMENT, "invalid CNI_IFNAME", f"{name!r} {problem}")


@pytest.mark.parametrize(("name", "msg"), [
    ("", "required env variables [CNI_IFNAME] missing"),
    ("x" * 16, "invalid CNI_IFNAME"),
    ("..", "invalid CNI_IFNAME"),
])
@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
def test_invalid_ifname_through_the_environment(command: str, name: str, msg: str) -> None:
    assert env_error({"CNI_COMMAND": command, **FULL, "CNI_IFNAME": name}).msg == msg


@pytest.mark.parametrize(("raw", "parsed"), [
    ("", {}),
    ("K=V", {"K": "V"}),
    ("K=V;K2=V2", {"K": "V", "K2": "V2"}),
    ("IgnoreUnknown=1;IP=10.1.17.5;", {"IgnoreUnknown": "1", "IP": "10.1.17.5"}),
    (";;K=V;;", {"K": "V"}),
    ("K=", {"K": ""}),
    ("K=a=b", {"K": "a=b"}),
    ("K=1;K=2", {"K": "2"}),
    ("K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
     {"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "web-0"}),
])
def test_cni_args(raw: str, parsed: dict[str, str]) -> None:
    assert parse_args(raw) == parsed
    assert parse_environment({"CNI_COMMAND": "ADD", **FULL, "CNI_ARGS": raw}).args == parsed


@pytest.mark.parametrize(("raw", "pair"), [("K", "K"), ("=V", "=V"), ("K=V;bad", "bad"),
                                           ("K=V; ;K2=V2", " ")])
def test_bad_cni_args_pair_is_code_4(raw: str, pair: str) -> None:
    error = env_error({"CNI_COMMAND": "ADD", **FULL, "CNI_ARGS": raw})
    assert (error.msg, error.details) == ("invalid CNI_ARGS", f"pair {pair!r} is not K=V")
