"""The warm path with a real flanneld (and etcd): flanneld killed with SIGKILL in the middle
of concurrent relayed ADDs. Every ADD answers (a result or CNI error JSON), its CNI worker
server goes with flanneld, the runtime's DEL leaves nothing behind, and its retries
succeed: cold while flanneld is down, relayed again once it is back."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lab.cluster import Cluster, Node
from lab.plugin import Outcome, invoke, links
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
PODS = 8
NODE_LINKS = {"lo", "cni0", "flannel0", "ul-eth0"}
KILL_AFTER = (0.01, 0.04, 0.1)     # seconds into the concurrent ADDs


def servers_of(node: Node) -> list[int]:
    """Pids of `pyflannel --serve` processes on the node's socket."""
    needle = f"--serve\0{node.cni_socket}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and needle in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def call(cluster: Cluster, node: Node, command: str, pod: str, cid: str,
         conf_extra: dict | None = None) -> Outcome:
    return invoke(command, dict(cluster.cni_conf(node), **(conf_extra or {})),
                  node=node.netns, container_id=cid, netns=cluster.spaces.path(pod),
                  extra_env=cluster.cni_env(node), timeout=90)


def assert_nothing_left(cluster: Cluster, node: Node, pods: list[str]) -> None:
    assert {link["ifname"] for link in links(node.netns)} <= NODE_LINKS
    store = node.dir / "cni" / cluster.net_name
    assert sorted(p.name for p in store.iterdir() if p.name[0].isdigit()) == []
    assert list((store / "attachments").iterdir()) == []
    for pod in pods:
        assert [link["ifname"] for link in links(pod)] == ["lo"], pod


def adds_and_dels(cluster: Cluster, node: Node, pods: list[str]) -> None:
    for i, pod in enumerate(pods):
        out = call(cluster, node, "ADD", pod, f"retry{i}")
        assert out.code == 0, out.stdout + out.stderr
        assert call(cluster, node, "DEL", pod, f"retry{i}",
                    {"prevResult": out.json}).code == 0
    assert_nothing_left(cluster, node, pods)


def test_flanneld_killed_mid_warm_adds_leaves_nothing_and_retries_succeed() -> None:
    with Cluster(nodes=1, underlay=83) as cluster:
        node = cluster.nodes[0]
        pods = [cluster.spaces.make("pfpod") for _ in range(PODS)]
        for delay in KILL_AFTER:
            kill_mid_adds(cluster, node, pods, delay)


def kill_mid_adds(cluster: Cluster, node: Node, pods: list[str], delay: float) -> None:
    assert wait_for(lambda: node.cni_socket.exists() and servers_of(node), 15), node.log()
    server = servers_of(node)
    assert node.proc is not None
    with ThreadPoolExecutor(PODS) as pool:
        calls = [pool.submit(call, cluster, node, "ADD", pod, f"pod{i}")
                 for i, pod in enumerate(pods)]
        time.sleep(delay)
        os.kill(node.proc.pid, signal.SIGKILL)       # flanneld alone, not its group
        node.proc.wait(10)
        outcomes = [c.result(timeout=120) for c in calls]
    node.proc = None
    for out in outcomes:         # each answered: a result, or a CNI error in JSON
        assert out.code == 0 or "code" in json.loads(out.stdout), out.stdout + out.stderr
    # The worker server notices flanneld is gone and exits; no spare is left waiting.
    assert wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in server), 15), \
        "the CNI worker server outlived flanneld"
    assert servers_of(node) == []
    for i, (pod, out) in enumerate(zip(pods, outcomes, strict=True)):  # the runtime's DEL
        prev = {"prevResult": out.json} if out.code == 0 else {}
        assert call(cluster, node, "DEL", pod, f"pod{i}", prev).code == 0
    assert_nothing_left(cluster, node, pods)
    adds_and_dels(cluster, node, pods)           # retried with flanneld down: cold
    cluster.start_node(node)
    cluster.wait_ready(node)
    assert wait_for(lambda: servers_of(node), 15), node.log()
    adds_and_dels(cluster, node, pods)           # and relayed again
    assert "failed" not in node.log().split("serving CNI calls")[-1]
