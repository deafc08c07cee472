"""The plugin driven through libcni (what containerd and CRI-O use) by our cnitool.

Each chain starts with pyflannel, or with the reference bridge + host-local pair so a
failure can be told apart from a harness bug; portmap, tuning and bandwidth follow.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import ip_address, ip_interface, ip_network
from pathlib import Path

import pytest

from lab.netns import NETNS_DIR, Namespaces, run, unique
from lab.plugin import Outcome, addresses, links
from tests.conftest import Node
from tests.support.cnitool import run_cnitool

SUBNET = ip_network("10.244.1.0/24")
HOST_PORT, POD_PORT = 18080, 8080
PORT_MAPPINGS = {"portMappings": [
    {"hostPort": HOST_PORT, "containerPort": POD_PORT, "protocol": "tcp"}]}
PORTMAP = {"type": "portmap", "capabilities": {"portMappings": True}}
POD_MAC = "0a:58:0a:f4:01:aa"
TUNING = {"type": "tuning", "mtu": 1400, "mac": POD_MAC,
          "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}}
BANDWIDTH = {"type": "bandwidth", "ingressRate": 8_000_000, "ingressBurst": 800_000,
             "egressRate": 8_000_000, "egressBurst": 800_000}
REPLY = "hello from the pod"

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("cni_executable")]


@dataclass
class Harness:
    """One network (named after the node) in a temp NETCONFPATH, with a temp libcni cache."""

    tool: Path
    node: Node
    conf_dir: Path
    cache_dir: Path

    def write(self, version: str, plugins: list[dict]) -> None:
        conflist = {"cniVersion": version, "name": self.node.name, "plugins": plugins}
        (self.conf_dir / "10-test.conflist").write_text(json.dumps(conflist))

    def __call__(self, command: str, pod: str, container_id: str,
                 cap_args: dict | None = None) -> Outcome:
        return run_cnitool(self.tool, command, self.node.name, pod, node=self.node.netns,
                           conf_dir=self.conf_dir, cache_dir=self.cache_dir,
                           cap_args=cap_args, container_id=container_id)


@pytest.fixture
def cni(cnitool: Path, node: Node, tmp_path: Path) -> Harness:
    h = Harness(cnitool, node, tmp_path / "net.d", tmp_path / "cache")
    h.conf_dir.mkdir()
    return h


@pytest.fixture(params=["pyflannel", "reference"])
def main_plugin(request: pytest.FixtureRequest, node: Node) -> dict:
    """The chain's first plugin: pyflannel, or bridge + host-local configured alike."""
    if request.param == "pyflannel":
        return node.conf(isDefaultGateway=True, hairpinMode=True)
    return {"type": "bridge", "bridge": "cni0", "isDefaultGateway": True, "hairpinMode": True,
            "ipam": {"type": "host-local", "subnet": str(SUBNET),
                     "dataDir": str(node.data_dir)}}


def nat_rules(netns: str) -> str:
    return run("iptables-save", "-t", "nat", netns=netns).stdout


def stray_links(netns: str, keep: tuple[str, ...] = ()) -> list[str]:
    """Links other than lo, the cni0 bridge and `keep`."""
    return [link["ifname"] for link in links(netns)
            if link["ifname"] not in ("lo", "cni0", *keep)]


def reserved_ips(data_dir: Path) -> set[str]:
    """Names of the IP reservation files under `data_dir` (not the bookkeeping files)."""
    def is_ip(name: str) -> bool:
        try:
            ip_address(name)
        except ValueError:
            return False
        return True
    return {f for _, _, files in os.walk(data_dir) for f in files if is_ip(f)}


def pod_path(pod: str) -> str:
    return os.path.join(NETNS_DIR, pod)


@contextmanager
def tcp_server(netns: str, port: int) -> Iterator[None]:
    """A server answering REPLY on `port` in `netns` for at most 60 s, killed on exit."""
    code = (f"import socket,time\ns=socket.create_server(('0.0.0.0',{port}))\n"
            "print('ready',flush=True)\nend=time.time()+60\n"
            "while time.time()<end:\n s.settimeout(end-time.time())\n"
            f" c,_=s.accept()\n c.sendall({REPLY!r}.encode())\n c.close()\n")
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", code],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert select.select([proc.stdout], [], [], 10)[0], "server did not start"
        assert proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


def fetch(netns: str, host: str, port: int) -> str | None:
    """What a TCP connection from `netns` to host:port receives; None if it fails."""
    code = (f"import socket\nc=socket.create_connection(({host!r},{port}),timeout=3)\n"
            "c.settimeout(3)\nprint(c.recv(100).decode())")
    res = run(sys.executable, "-c", code, netns=netns, check=False, timeout=10)
    return res.stdout.strip() if res.returncode == 0 else None


def connect_client(namespaces: Namespaces, node: Node) -> str:
    """A namespace wired to the node: 192.168.77.2 there, 192.168.77.1 on the node."""
    client = namespaces.make("pfcli")
    near, far = unique("vn"), unique("vc")
    run("ip", "link", "add", near, "type", "veth", "peer", "name", far, "netns", client,
        netns=node.netns)
    run("ip", "addr", "add", "192.168.77.1/24", "dev", near, netns=node.netns)
    run("ip", "link", "set", near, "up", netns=node.netns)
    run("ip", "addr", "add", "192.168.77.2/24", "dev", far, netns=client)
    run("ip", "link", "set", far, "up", netns=client)
    return client


@pytest.mark.parametrize("version", ["1.0.0", "0.4.0", "0.3.1"])
def test_add_check_del(cni: Harness, main_plugin: dict, namespaces: Namespaces, node: Node,
                       version: str) -> None:
    cni.write(version, [main_plugin, PORTMAP, TUNING])
    pod, cid = namespaces.make("pfpod"), unique("ctr")

    add = cni("add", pod, cid, PORT_MAPPINGS)
    assert add.code == 0, add.stderr
    result = add.json
    assert result["cniVersion"] == version
    ip = ip_interface(result["ips"][0]["address"])
    assert ip.network == SUBNET and ip.ip != SUBNET[1]
    pod_ifs = [i for i in result["interfaces"] if i.get("sandbox") == pod_path(pod)]
    assert [i["name"] for i in pod_ifs] == ["eth0"]
    assert addresses(pod, "eth0") == [str(ip)]
    assert reserved_ips(node.data_dir) == {str(ip.ip)}
    assert cid in nat_rules(node.netns)

    # Debian's portmap 1.1.1 CHECK wrongly wants ip6tables rules for an IPv4-only pod
    # (containernetworking/plugins#819), so CHECK runs without port mappings.
    check = cni("check", pod, cid)
    if version == "0.3.1":
        assert check.code != 0 and "CHECK" in check.stderr
    else:
        assert check.code == 0, check.stderr

    for _ in range(2):
        delete = cni("del", pod, cid, PORT_MAPPINGS)
        assert delete.code == 0, delete.stderr
    assert stray_links(node.netns) == []
    assert reserved_ips(node.data_dir) == set()
    rules = nat_rules(node.netns)
    assert cid not in rules and "CNI-DN-" not in rules


def test_portmap_reaches_pod(cni: Harness, main_plugin: dict, namespaces: Namespaces,
                             node: Node) -> None:
    cni.write("1.0.0", [main_plugin, PORTMAP])
    client = connect_client(namespaces, node)
    # A node forwards (kubelet requires it); the plugin may or may not set it itself.
    run("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=node.netns)
    pod, cid = namespaces.make("pfpod"), unique("ctr")
    with tcp_server(pod, POD_PORT):
        add = cni("add", pod, cid, PORT_MAPPINGS)
        assert add.code == 0, add.stderr
        assert fetch(client, "192.168.77.1", HOST_PORT) == REPLY

        delete = cni("del", pod, cid, PORT_MAPPINGS)
        assert delete.code == 0, delete.stderr
        assert fetch(client, "192.168.77.1", HOST_PORT) is None


def test_tuning_applies_in_pod(cni: Harness, main_plugin: dict, namespaces: Namespaces) -> None:
    cni.write("1.0.0", [main_plugin, TUNING])
    pod, cid = namespaces.make("pfpod"), unique("ctr")
    add = cni("add", pod, cid)
    assert add.code == 0, add.stderr
    eth0 = next(i for i in add.json["interfaces"] if i.get("sandbox") == pod_path(pod))
    assert eth0["mac"] == POD_MAC

    link = next(li for li in links(pod) if li["ifname"] == "eth0")
    assert (link["mtu"], link["address"]) == (1400, POD_MAC)
    sysctl = run("sysctl", "-n", "net.ipv4.conf.eth0.arp_notify", netns=pod).stdout
    assert sysctl.strip() == "1"
    check = cni("check", pod, cid)
    assert check.code == 0, check.stderr
    delete = cni("del", pod, cid)
    assert delete.code == 0, delete.stderr


def test_bandwidth_shapes_host_veth(cni: Harness, main_plugin: dict, namespaces: Namespaces,
                                   node: Node) -> None:
    """bandwidth finds the host veth through the result's interfaces and shapes it."""
    cni.write("1.0.0", [main_plugin, BANDWIDTH])
    pod, cid = namespaces.make("pfpod"), unique("ctr")
    add = cni("add", pod, cid)
    assert add.code == 0, add.stderr
    kinds = {li["ifname"]: li.get("linkinfo", {}).get("info_kind") for li in links(node.netns)}
    veths = [name for name, kind in kinds.items() if kind == "veth"]
    assert len(veths) == 1 and "ifb" in kinds.values()
    qdiscs = json.loads(run("tc", "-j", "qdisc", "show", "dev", veths[0],
                            netns=node.netns).stdout)
    assert "tbf" in [q["kind"] for q in qdiscs]

    delete = cni("del", pod, cid)
    assert delete.code == 0, delete.stderr
    assert stray_links(node.netns) == []
