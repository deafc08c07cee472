"""The warm path under kills: a relayed ADD killed at any moment (the worker dies with its
client), the worker server killed (alone, as when flanneld dies, or with its running
workers, as when flanneld's container is killed) in the middle of concurrent ADDs. Every
call answers (success or CNI error JSON), DEL then leaves nothing, and the runtime's
retry succeeds. A waiting worker killed before its call stops nothing. A worker serves call
after call and keeps nothing of them. And clients that stall or send garbage hold up no
one."""

from __future__ import annotations

import json
import os
import random
import signal
import socket as sockets
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lab.plugin import cni_path, invoke, plugin_binary
from tests.support.waiting import wait_for

from .attachments import add, assert_nothing_left, delete
from .conftest import serving

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("cni_executable")]
EXECUTABLES = ("venv",)      # the server is started here, by each test
PODS = 8


def add_and_delete_all(node, namespaces, pods: list[str], prefix: str,
                       env: dict[str, str]) -> None:
    """ADD container `prefix<i>` in each pod, then DEL each: every call succeeds and nothing
    is left."""
    for i, pod in enumerate(pods):
        out = add(node, namespaces.path(pod), f"{prefix}{i}", env=env)
        assert out.code == 0, out.stdout
    for i, pod in enumerate(pods):
        assert delete(node, namespaces.path(pod), f"{prefix}{i}").code == 0
    assert_nothing_left(node, tuple(pods))


def relayed_env(socket: str, cid: str, pod_path: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": cid, "CNI_NETNS": pod_path,
                "CNI_IFNAME": "eth0", "CNI_PATH": cni_path(), "PYFLANNEL_SOCKET": socket})
    return env


def test_a_relayed_add_killed_anywhere_leaves_nothing_after_del(node, namespaces, tmp_path):
    pod = namespaces.make("pfpod")
    pod_path = namespaces.path(pod)
    with serving(plugin_binary(), tmp_path) as socket:
        env = {"PYFLANNEL_SOCKET": str(socket)}
        started = time.monotonic()
        assert add(node, pod_path, "timing", env=env).code == 0
        add_seconds = time.monotonic() - started
        assert delete(node, pod_path, "timing").code == 0
        rng = random.Random(13)
        for i in range(12):
            proc = subprocess.Popen(["ip", "netns", "exec", node.netns, plugin_binary()],
                                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL,
                                    env=relayed_env(str(socket), f"killed{i}", pod_path))
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(node.conf()).encode())
            proc.stdin.close()
            time.sleep(rng.uniform(0, add_seconds))
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            time.sleep(0.05)     # the runtime's DEL comes after the kill, in a new process
            assert delete(node, pod_path, f"killed{i}").code == 0
            assert_nothing_left(node, (pod,))


@pytest.mark.parametrize("what", ["server", "server and workers"])
def test_killing_the_worker_server_mid_adds_leaves_nothing_and_retries_succeed(
        node, namespaces, tmp_path, what):
    pods = [namespaces.make("pfpod") for _ in range(PODS)]
    server = serving(plugin_binary(), tmp_path, new_session=True)
    socket = str(server.__enter__())
    env = {"PYFLANNEL_SOCKET": socket}
    try:
        with ThreadPoolExecutor(PODS) as pool:
            calls = [pool.submit(add, node, namespaces.path(p), f"pod{i}", env=env)
                     for i, p in enumerate(pods)]
            time.sleep(0.05)
            if what == "server":
                server.proc.send_signal(signal.SIGKILL)
            else:
                os.killpg(server.proc.pid, signal.SIGKILL)
            outcomes = [c.result(timeout=120) for c in calls]
    finally:
        server.kill()
    for out in outcomes:      # each answered: a result, or a CNI error in JSON
        assert out.code == 0 or "code" in json.loads(out.stdout), out.stdout + out.stderr
    if what == "server":      # running workers finish their calls
        assert [o.code for o in outcomes] == [0] * PODS, [o.stdout for o in outcomes]
    for i, p in enumerate(pods):     # the runtime's DEL, then its retry (now cold)
        assert delete(node, namespaces.path(p), f"pod{i}").code == 0
    assert_nothing_left(node, tuple(pods))
    add_and_delete_all(node, namespaces, pods, "pod", env)
    assert invoke("VERSION", "{}", node=None).code == 0


def test_stalled_and_garbage_clients_hold_up_no_one_and_the_socket_is_root_only(
        node, namespaces, tmp_path):
    pod = namespaces.make("pfpod")
    with serving(plugin_binary(), tmp_path) as path:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        stalled = []
        for _ in range(4):        # connected, never sending a byte
            s = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
            s.connect(str(path))
            stalled.append(s)
        for junk in (b"", b"GET / HTTP/1.0\r\n\r\n", b"PFW1" + b"\xff" * 64):
            with sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM) as s:
                s.connect(str(path))
                s.sendall(junk)
                s.shutdown(sockets.SHUT_WR)
                s.settimeout(15)
                assert s.recv(16) == b""          # dropped without an answer
        started = time.monotonic()
        out = add(node, namespaces.path(pod), "after-junk", env={"PYFLANNEL_SOCKET": str(path)})
        assert out.code == 0, out.stdout
        assert time.monotonic() - started < 5
        assert delete(node, namespaces.path(pod), "after-junk").code == 0
        for s in stalled:
            s.settimeout(15)
            assert s.recv(16) == b""              # each dropped after its read timeout
            s.close()
    assert "dropped a request" in (tmp_path / "serve.log").read_text()
    assert_nothing_left(node, (pod,))


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_killed_spare_worker_neither_stops_the_server_nor_fails_the_next_call(
        node, namespaces, tmp_path):
    pod = namespaces.make("pfpod")
    server = serving(plugin_binary(), tmp_path)
    with server as path:
        env = {"PYFLANNEL_SOCKET": str(path)}
        for round_ in range(2):
            deadline = time.monotonic() + 10     # the last call's worker reaped (within 1 s)
            while len(children(server.proc.pid)) != 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            spares = children(server.proc.pid)
            assert len(spares) == 1, spares          # the one forked ahead, idle
            os.kill(spares[0], signal.SIGKILL)
            out = add(node, namespaces.path(pod), f"after-kill{round_}", env=env)
            assert out.code == 0, out.stdout
            assert delete(node, namespaces.path(pod), f"after-kill{round_}").code == 0
        assert server.proc.poll() is None            # (its log is checked on exit)
    assert_nothing_left(node, (pod,))


def _descriptors(pid: int) -> dict[str, str]:
    fd_dir = f"/proc/{pid}/fd"
    out = {}
    for fd in os.listdir(fd_dir):
        try:
            out[fd] = os.readlink(f"{fd_dir}/{fd}")
        except FileNotFoundError:
            pass
    return out


def _read_bytes(pid: int) -> int:
    """What the process has read through read(2) and the like (the call's files)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar")


def test_a_worker_serves_call_after_call_and_keeps_nothing_of_them(node, namespaces, tmp_path):
    pods = [namespaces.make("pfpod") for _ in range(3)]
    server = serving(plugin_binary(), tmp_path)
    with server as path:
        env = {"PYFLANNEL_SOCKET": str(path)}
        workers = wait_for(lambda: children(server.proc.pid))
        assert len(workers) == 1, workers                # the one forked ahead
        worker = workers[0]
        home = os.readlink(f"/proc/{worker}/ns/net")
        held, read = _descriptors(worker), _read_bytes(worker)
        for round_ in range(3):
            add_and_delete_all(node, namespaces, pods, f"reused{round_}-", env)
        # The same worker did the calls, back in the server's namespace, holding what it
        # held before (the calls' descriptors and sockets closed, their threads done).
        assert children(server.proc.pid) == [worker]
        assert _read_bytes(worker) > read
        assert os.readlink(f"/proc/{worker}/ns/net") == home
        assert wait_for(lambda: _descriptors(worker) == held), (_descriptors(worker), held)
        assert wait_for(lambda: len(os.listdir(f"/proc/{worker}/task")) == 1)
