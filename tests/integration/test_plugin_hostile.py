"""Inputs that used to hang the plugin, crash it (code 999) or leave something behind:
each now gets the spec's error, in bounded time, and changes nothing."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import threading
import time

import pytest

from lab.plugin import cni_path, invoke, links, plugin_binary

from .attachments import add, assert_nothing_left, delete, node_links

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("cni_executable")]

BOUND = 10     # seconds any of these calls may take; they answer in well under one


def timed(*args, **kw):
    started = time.monotonic()
    out = invoke(*args, timeout=BOUND, **kw)
    assert time.monotonic() - started < BOUND
    return out


def refused(out, code: int, *words: str) -> dict:
    assert out.code == 1, out.stdout + out.stderr
    error = out.json
    assert error["code"] == code, error
    text = error["msg"] + " " + error.get("details", "")
    assert all(w in text for w in words), error
    assert "Traceback" not in out.stdout
    return error


def odd_path(kind: str, tmp_path, content: str = "") -> str:
    """A path to something that is not what the plugin expects there: a FIFO (opening it
    would block), a directory, a regular file of `content`, or a path kept as it is."""
    path = tmp_path / "odd"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "regular":
        path.write_text(content)
    else:
        return kind
    return str(path)


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "directory", "regular"])
def test_a_subnet_file_that_is_not_a_small_regular_file_is_code_7(kind, node, namespaces,
                                                                 tmp_path):
    huge = "# padding\n" * 10_000 + node.subnet_file.read_text()
    path = odd_path(kind, tmp_path, huge)
    pod = namespaces.make("pfpod")
    for command in ("ADD", "STATUS"):
        out = timed(command, node.conf(subnetFile=path), node=node.netns,
                    container_id="c1", netns=namespaces.path(pod))
        refused(out, 7 if command == "ADD" else 50, path)
    assert_nothing_left(node, (pod,))


@pytest.mark.parametrize("kind", ["fifo", "directory", "/dev/null", "regular",
                                  "/proc/self/ns/pid"])
def test_a_netns_path_that_is_not_a_network_namespace_is_code_8(kind, node, tmp_path):
    path = odd_path(kind, tmp_path, "not a namespace")
    out = timed("ADD", node.conf(), node=node.netns, container_id="c1", netns=path)
    refused(out, 8, path, "not a network namespace")
    assert_nothing_left(node)


@pytest.mark.parametrize("ifname", ["eth%d", "%d", "e%s", "eth\u00e00", "eth\x0b0"])
def test_an_interface_name_the_kernel_would_rewrite_or_refuse_is_code_4(ifname, node,
                                                                       namespaces):
    pod = namespaces.make("pfpod")
    out = timed("ADD", node.conf(), node=node.netns, container_id="c1",
                netns=namespaces.path(pod), ifname=ifname)
    refused(out, 4, "CNI_IFNAME")
    assert_nothing_left(node, (pod,))


def raw_invoke(node, env: dict[bytes, bytes], stdin: bytes) -> subprocess.CompletedProcess:
    base = {k.encode(): v.encode() for k, v in os.environ.items() if not k.startswith("CNI_")}
    base.update({b"CNI_COMMAND": b"ADD", b"CNI_CONTAINERID": b"c1", b"CNI_IFNAME": b"eth0",
                 b"CNI_PATH": cni_path().encode()})
    base.update(env)
    return subprocess.run(["ip", "netns", "exec", node.netns, plugin_binary()], input=stdin,
                          env=base, capture_output=True, timeout=BOUND)


@pytest.mark.parametrize(("env", "code", "word"), [
    ({b"CNI_NETNS": b"/run/netns/\xff\xfe"}, 4, "CNI_NETNS"),
    ({b"CNI_IFNAME": b"eth\xff"}, 4, "CNI_IFNAME"),
    ({b"CNI_CONTAINERID": b"c\xff1"}, 4, "CNI_CONTAINERID"),
    ({b"CNI_ARGS": b"IP=10.244.1.\xff"}, 4, "CNI_ARGS IP"),
    ({b"PYFLANNEL_TIMEOUT": b"soon"}, 4, "PYFLANNEL_TIMEOUT"),
])
def test_environment_bytes_that_are_not_utf8_are_code_4(env, code, word, node, namespaces):
    pod = namespaces.make("pfpod")
    env = {b"CNI_NETNS": namespaces.path(pod).encode(), **env}
    proc = raw_invoke(node, env, json.dumps(node.conf()).encode())
    error = json.loads(proc.stdout)
    assert proc.returncode == 1 and error["code"] == code and word in error["msg"] + \
        error.get("details", ""), error
    assert_nothing_left(node, (pod,))


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(("stdin", "code", "word"), [
    (nested(100_000).encode(), 6, "nested too deeply"),
    (('{"cniVersion": "1.1.0", "name": "n", "mtu": ' + nested(5000) + "}").encode(), 6,
     "nested too deeply"),
    (b'{"cniVersion": "1.1.0", "name": "n", "dataDir": "/tmp/\\udc80"}', 7, "dataDir"),
    (b'{"cniVersion": "1.1.0", "name": "n", "subnetFile": "/tmp/a\\u0000b"}', 7, "subnetFile"),
    (b'{"cniVersion": "1.1.0", "name": "n\\u00e9"}', 7, "network name"),
    (b"\xff\xfe{}", 6, "parsing"),
    (b" " * (5 << 20), 6, "bytes on stdin"),
    (b'{"cniVersion": "1.1.0", "name": "n", "runtimeConfig": {"ips": "10.244.1.5"}}', 7,
     "runtimeConfig.ips"),
    (b'{"cniVersion": "1.1.0", "name": "n", "runtimeConfig": []}', 7, "runtimeConfig"),
])
def test_malformed_config_is_a_spec_error(stdin, code, word, node, namespaces):
    pod = namespaces.make("pfpod")
    out = timed("ADD", stdin, node=node.netns, container_id="c1", netns=namespaces.path(pod))
    refused(out, code, word)
    assert_nothing_left(node, (pod,))


@pytest.mark.parametrize("prev", [
    {"interfaces": [{"name": "eth0", "mac": 5, "sandbox": "/x"}]},
    {"interfaces": {"name": "eth0"}},
    {"interfaces": [["eth0"]]},
    {"ips": [{"address": ["10.244.1.2/24"]}]},
    {"ips": [{"address": "10.244.1.2/24", "interface": -1}]},
    {"routes": [{"dst": 5}]},
    {"routes": [{"dst": "0.0.0.0/0", "gw": {"a": 1}}]},
    {"interfaces": [{"name": "eth0", "sandbox": "/x", "mtu": "1500"}]},
])
def test_check_with_a_prev_result_of_the_wrong_shape_is_code_6(prev, node, namespaces):
    pod = namespaces.make("pfpod")
    result = add(node, namespaces.path(pod), "c1").json
    before = node_links(node)
    out = timed("CHECK", node.conf(prevResult={**result, **prev}), node=node.netns,
                container_id="c1", netns=namespaces.path(pod))
    refused(out, 6, "prevResult")
    assert node_links(node) == before
    assert delete(node, namespaces.path(pod), "c1").code == 0


@pytest.mark.parametrize(("id_length", "name_length"), [(300, 10), (5000, 300),
                                                         (100_000, 1000)])
def test_long_container_ids_and_network_names_work_through_every_command(
        id_length, name_length, node, namespaces):
    node.name = ("n" * name_length)[:name_length]
    cid = ("c" * id_length)[:id_length]
    pod = namespaces.make("pfpod")
    out = add(node, namespaces.path(pod), cid)
    assert out.code == 0, out.stdout
    check = invoke("CHECK", node.conf(prevResult=out.json), node=node.netns, container_id=cid,
                   netns=namespaces.path(pod))
    assert check.code == 0, check.stdout
    gc = invoke("GC", node.conf(**{"cni.dev/valid-attachments": [
        {"containerID": cid, "ifname": "eth0"}]}), node=node.netns)
    assert gc.code == 0, gc.stdout
    assert len(node_links(node)) == 3          # GC kept what is valid: lo, cni0, the veth
    for _ in range(2):
        assert delete(node, namespaces.path(pod), cid).code == 0
    assert_nothing_left(node, (pod,))
    assert add(node, namespaces.path(pod), cid).code == 0
    gc = invoke("GC", node.conf(**{"cni.dev/valid-attachments": []}), node=node.netns)
    assert gc.code == 0, gc.stdout
    assert_nothing_left(node, (pod,))


def test_a_call_stuck_on_the_ipam_lock_gives_up_in_time_and_rolls_back(node, namespaces):
    pod = namespaces.make("pfpod")
    store = node.data_dir / node.name
    store.mkdir(parents=True)
    with open(store / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)      # a plugin stuck forever while holding it
        started = time.monotonic()
        out = timed("ADD", node.conf(), node=node.netns, container_id="c1",
                    netns=namespaces.path(pod), extra_env={"PYFLANNEL_TIMEOUT": "1"})
        assert 1 <= time.monotonic() - started < 1 + BOUND / 2
        refused(out, 11, "gave up after 1 s")
    assert_nothing_left(node, (pod,))
    assert add(node, namespaces.path(pod), "c1").code == 0


def test_a_stdin_that_never_ends_gives_up_in_time(node, namespaces):
    pod = namespaces.make("pfpod")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0",
                "CNI_NETNS": namespaces.path(pod), "PYFLANNEL_TIMEOUT": "1"})
    proc = subprocess.Popen(["ip", "netns", "exec", node.netns, plugin_binary()],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    watchdog = threading.Timer(BOUND, proc.kill)
    watchdog.start()
    try:
        proc.stdin.write(b'{"cniVersion": "1.1.0", ')      # and never closed
        proc.stdin.flush()
        stdout = proc.stdout.read()                       # until the plugin exits
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
    assert json.loads(stdout)["code"] == 11
    assert [link["ifname"] for link in links(pod)] == ["lo"]
