"""ADD killed at every point where it changes something; DEL or GC then leaves nothing.

The kill points are exact: a first ADD runs under strace to count the system calls that
change state (netlink requests, file writes, links, renames, the fork of iptables-restore,
the wait for it); then one ADD per point runs under strace told to SIGKILL the plugin on
entering the Nth such call. A few more ADDs are killed after random delays, between system
calls. After each kill the runtime's recovery runs, DEL for that attachment or GC listing
only the survivors, and nothing of the killed attachment may remain: no veth on the node or
in the pod, no reservation, record, temporary file or NAT rule; a pod that was there all
along keeps everything.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from collections import Counter

import pytest

from lab.netns import run
from lab.plugin import cni_path, invoke, links, plugin_binary

from .attachments import leftover_files, nat_rules, node_links, records, reservations

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("cni_executable")]
# Once: the build runs the same code, and under strace its bootloader makes every run of
# the ~40 kill points about twice as slow (45 s against the virtualenv's).
EXECUTABLES = ("venv",)

# The calls that change state; a kill on entering one leaves what came before it.
MUTATING = ("sendto", "write", "rename", "link", "unlink", "mkdir", "flock", "setns",
            "clone", "clone3", "wait4")
RANDOM_KILLS = 8


def env_for(command: str, cid: str, pod_path: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update({"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": pod_path,
                "CNI_IFNAME": "eth0", "CNI_PATH": cni_path()})
    return env


def traced_add(node, cid: str, pod_path: str, strace: list[str]) -> subprocess.CompletedProcess:
    # -f: iptables-restore is traced too (its calls are counted apart: per process). Not
    # --seccomp-bpf, which would be faster: strace 6.1 then never delivers the signal.
    cmd = ["ip", "netns", "exec", node.netns, "strace", "-qq", "-f", *strace, plugin_binary()]
    return subprocess.run(cmd, input=json.dumps(node.conf()).encode(), capture_output=True,
                          env=env_for("ADD", cid, pod_path), timeout=60)


def kill_points(node, pod_path: str, trace_file: str) -> list[tuple[str, int]]:
    """(syscall, N) for every state-changing call of the plugin's own process in one ADD."""
    out = traced_add(node, "counting", pod_path,
                     ["-o", trace_file, "-e", f"trace={','.join(MUTATING)}"])
    assert out.returncode == 0, out.stderr.decode()
    lines = open(trace_file).read().splitlines()
    plugin_pid = lines[0].split()[0]
    calls = Counter(m.group(1) for line in lines if line.split()[0] == plugin_pid
                    and (m := re.match(r"\d+\s+(\w+)\(", line)))
    assert invoke("DEL", node.conf(), node=node.netns, container_id="counting",
                  netns=pod_path).code == 0
    assert calls["sendto"] >= 8 and calls["link"] >= 1 and calls["clone"] + calls["clone3"]
    return [(name, n) for name in MUTATING for n in range(1, calls[name] + 1)]


def recover(node, cid: str, pod_path: str, use_gc: bool) -> None:
    if use_gc:
        conf = node.conf(**{"cni.dev/valid-attachments": [{"containerID": "survivor",
                                                           "ifname": "eth0"}]})
        out = invoke("GC", conf, node=node.netns)
    else:
        out = invoke("DEL", node.conf(), node=node.netns, container_id=cid, netns=pod_path)
    assert out.code == 0, out.stdout


def test_add_killed_anywhere_leaves_nothing_after_del_or_gc(node, namespaces, tmp_path):
    survivor_pod = namespaces.make("pfpod")
    survivor = invoke("ADD", node.conf(), node=node.netns, container_id="survivor",
                      netns=namespaces.path(survivor_pod))
    assert survivor.code == 0, survivor.stdout
    survivor_veth = survivor.json["interfaces"][1]["name"]
    expected = (node_links(node), reservations(node), records(node), nat_rules(node),
                leftover_files(node))
    pod = namespaces.make("pfpod")
    pod_path = namespaces.path(pod)
    points = kill_points(node, pod_path, str(tmp_path / "trace"))
    rng = random.Random(9)
    started = time.monotonic()
    clean = invoke("ADD", node.conf(), node=node.netns, container_id="timing", netns=pod_path)
    add_seconds = time.monotonic() - started
    assert clean.code == 0 and invoke("DEL", node.conf(), node=node.netns,
                                      container_id="timing", netns=pod_path).code == 0
    runs = [("inject", p) for p in points] + [("delay", rng.uniform(0, add_seconds))
                                              for _ in range(RANDOM_KILLS)]
    killed = 0
    for i, (how, point) in enumerate(runs):
        cid = f"killed{i}"
        if how == "inject":
            name, n = point
            out = traced_add(node, cid, pod_path,
                             ["-o", "/dev/null", "-e", f"trace={name}",
                              "-e", f"inject={name}:signal=KILL:when={n}"])
            killed += out.returncode != 0
        else:
            proc = subprocess.Popen(["ip", "netns", "exec", node.netns, plugin_binary()],
                                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, env=env_for("ADD", cid, pod_path))
            proc.stdin.write(json.dumps(node.conf()).encode())
            proc.stdin.close()
            time.sleep(point)
            proc.send_signal(signal.SIGKILL)  # ip netns exec execs the plugin: same process
            proc.wait(30)
        recover(node, cid, pod_path, use_gc=i % 2 == 1)
        state = (node_links(node), reservations(node), records(node), nat_rules(node),
                 leftover_files(node))
        assert state == expected, f"after killing ADD at {how} {point}"
        assert [link["ifname"] for link in links(pod)] == ["lo"], f"{how} {point}"
    assert killed >= len(points) * 0.9, "most injected kills must hit the plugin"
    # The survivor was never touched: it still answers from its pod.
    assert survivor_veth in node_links(node)
    assert run("ping", "-c", "1", "-W", "2", "10.244.1.1", netns=survivor_pod).returncode == 0
