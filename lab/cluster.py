"""A local cluster in network namespaces: an underlay, etcd, nodes running flanneld, pods.

    hub netns:  bridge "ul0" 192.168.<n>.1/24 (the underlay) and etcd listening there
    node netns: veth to the hub, 192.168.<n>.<10+i>/24, `flanneld --iface <veth>`
                (tun flannel0), and the bridge cni0 the CNI plugin makes for its pods
    pod netns:  eth0 from the pyflannel CNI executable, as a runtime would add it

Everything lives in namespaces made here and is removed by `teardown` (also after a
failure: use the cluster as a context manager). Shared by the end-to-end tests, the demo
and the throughput benchmark.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.etcd import EtcdServer
from lab.kept import KeptCluster, Process
from lab.netns import Namespaces, run, unique
from lab.plugin import installed, invoke

HEALTHZ_PORT = 8471
UNDERLAY_MTU = 1500


def flanneld_binary() -> str:
    """The daemon under test: $PYFLANNEL_FLANNELD_BIN, else the installed `flanneld`."""
    return installed("flanneld", "PYFLANNEL_FLANNELD_BIN")


def http_get(netns: str, port: int, path: str, timeout: float = 5) -> tuple[int, str]:
    """GET http://127.0.0.1:<port><path> from inside `netns`: (status, body); 0 if no answer."""
    url = f"http://127.0.0.1:{port}{path}"
    script = ("import sys, urllib.request, urllib.error\n"
              "try:\n"
              f"    r = urllib.request.urlopen('{url}', timeout={timeout})\n"
              "    print(r.status); print(r.read().decode(), end='')\n"
              "except urllib.error.HTTPError as e:\n"
              "    print(e.code); print(e.read().decode(), end='')\n"
              "except OSError:\n"
              "    print(0)\n")
    out = run(sys.executable, "-c", script, netns=netns, timeout=timeout + 10).stdout
    status, _, body = out.partition("\n")
    return int(status), body


@dataclass
class Pod:
    netns: str
    node: Node
    container_id: str
    ip: str


@dataclass
class Node:
    index: int
    netns: str
    dir: Path
    underlay_ip: str
    iface: str
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    pods: list[Pod] = field(default_factory=list)

    @property
    def subnet_file(self) -> Path:
        return self.dir / "subnet.env"

    @property
    def key_file(self) -> Path:
        return self.dir / "keys" / "udp.key"

    @property
    def log_file(self) -> Path:
        return self.dir / "flanneld.log"

    @property
    def cni_socket(self) -> Path:
        """Where the node's flanneld serves the CNI plugin's calls (the warm path)."""
        return self.dir / "cni.sock"

    def subnet(self) -> str:
        """FLANNEL_SUBNET from the node's subnet file, e.g. 10.244.3.1/24."""
        for line in self.subnet_file.read_text().splitlines():
            if line.startswith("FLANNEL_SUBNET="):
                return line.split("=", 1)[1]
        raise RuntimeError(f"no FLANNEL_SUBNET in {self.subnet_file}")

    def healthz(self) -> int:
        return http_get(self.netns, HEALTHZ_PORT, "/healthz")[0]

    def metrics(self) -> dict[str, float]:
        """The /metrics samples by name (labels included), e.g.
        'flanneld_udp_dropped_total{reason="unknown_peer"}'."""
        _, body = http_get(self.netns, HEALTHZ_PORT, "/metrics")
        samples = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def peers(self) -> list[dict[str, Any]]:
        status, body = http_get(self.netns, HEALTHZ_PORT, "/leases")
        found: list[dict[str, Any]] = json.loads(body) if status == 200 else []
        return found

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


class Cluster:
    """`nodes` nodes on one underlay with etcd; `network` and `backend` are written as the
    etcd config. Each node keeps its key file (the encrypted mode's) in its directory."""

    def __init__(self, nodes: int = 3, network: str = "10.244.0.0/16",
                 lease_ttl: int | None = None, extra_args: tuple[str, ...] = (),
                 underlay: int = 77, prefix: str = "/coreos.com/network",
                 write_config: bool = True, wait: bool = True,
                 backend: dict[str, Any] | None = None) -> None:
        self.spaces = Namespaces()
        self.workdir = Path(tempfile.mkdtemp(prefix="pyflannel-cluster-"))
        self.network = network
        self.backend = backend or {"Type": "udp"}
        self.prefix = prefix
        self.net_name = unique("pfnet")
        self.underlay = f"192.168.{underlay}"
        self.lease_ttl = lease_ttl
        self.extra_args = extra_args
        self.count = nodes
        self.write_config = write_config
        self.wait = wait
        self.hub = ""
        self.etcd: EtcdServer | None = None
        self.nodes: list[Node] = []
        self.kept = False

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.kept:
            self.teardown()

    # -- bring-up -----------------------------------------------------------------------

    def start(self) -> None:
        self.hub = self.spaces.make("pfhub")
        run("ip", "link", "add", "ul0", "type", "bridge", netns=self.hub)
        run("ip", "addr", "add", f"{self.underlay}.1/24", "dev", "ul0", netns=self.hub)
        run("ip", "link", "set", "ul0", "up", netns=self.hub)
        self.etcd = EtcdServer(netns=self.hub, ip=f"{self.underlay}.1",
                               data_dir=self.workdir / "etcd", name=unique("etcd"))
        self.etcd.start()
        if self.write_config:
            self.put_config({"Network": self.network, "Backend": self.backend})
        for i in range(self.count):
            self.nodes.append(self._make_node(i))
        for node in self.nodes:
            self.start_node(node)
        if self.wait:
            for node in self.nodes:
                self.wait_ready(node)

    def put_config(self, config: dict[str, Any]) -> None:
        assert self.etcd is not None
        self.etcd.etcdctl("put", f"{self.prefix}/config", json.dumps(config))

    def _make_node(self, i: int) -> Node:
        ns = self.spaces.make("pfnode")
        host_end, node_end = unique("ulh"), "ul-eth0"
        run("ip", "link", "add", host_end, "type", "veth", "peer", "name", node_end,
            netns=self.hub)
        run("ip", "link", "set", node_end, "netns", ns, netns=self.hub)
        run("ip", "link", "set", host_end, "master", "ul0", "up", netns=self.hub)
        ip = f"{self.underlay}.{10 + i}"
        run("ip", "addr", "add", f"{ip}/24", "dev", node_end, netns=ns)
        run("ip", "link", "set", node_end, "mtu", str(UNDERLAY_MTU), "up", netns=ns)
        node_dir = self.workdir / f"node{i}"
        node_dir.mkdir()
        return Node(i, ns, node_dir, ip, node_end, self.extra_args)

    def flanneld_args(self, node: Node) -> list[str]:
        assert self.etcd is not None
        args = [flanneld_binary(), f"--etcd-endpoints={self.etcd.url}",
                f"--etcd-prefix={self.prefix}", f"--iface={node.iface}",
                f"--subnet-file={node.subnet_file}", "--healthz-ip=127.0.0.1",
                f"--healthz-port={HEALTHZ_PORT}", f"--udp-key-file={node.key_file}",
                f"--cni-socket={node.cni_socket}", *node.extra_args]
        if self.lease_ttl is not None:
            args.append(f"--subnet-lease-ttl={self.lease_ttl}")
        return args

    def start_node(self, node: Node) -> None:
        log = open(node.log_file, "a")  # noqa: SIM115 (the child holds it)
        node.proc = subprocess.Popen(["ip", "netns", "exec", node.netns,
                                      *self.flanneld_args(node)],
                                     stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def wait_ready(self, node: Node, timeout: float = 30) -> None:
        """Until the node's /healthz answers 200; RuntimeError with its log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.proc is not None and node.proc.poll() is not None:
                raise RuntimeError(f"flanneld on node {node.index} exited "
                                   f"{node.proc.returncode}:\n{node.log()[-3000:]}")
            if node.subnet_file.exists() and node.healthz() == 200:
                return
            time.sleep(0.2)
        raise RuntimeError(f"flanneld on node {node.index} not ready after {timeout} s:\n"
                           f"{node.log()[-3000:]}")

    def stop_node(self, node: Node, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Signal the node's flanneld and wait for it; its exit status."""
        proc = node.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        node.proc = None
        return proc.returncode

    # -- pods ---------------------------------------------------------------------------

    def cni_conf(self, node: Node) -> dict[str, Any]:
        return {"cniVersion": "1.1.0", "name": self.net_name, "type": "pyflannel",
                "subnetFile": str(node.subnet_file), "dataDir": str(node.dir / "cni")}

    def cni_env(self, node: Node) -> dict[str, str]:
        """The plugin relays its calls to the node's flanneld, as on a real node."""
        return {"PYFLANNEL_SOCKET": str(node.cni_socket)}

    def add_pod(self, node: Node) -> Pod:
        ns = self.spaces.make("pfpod")
        cid = unique("pod")
        out = invoke("ADD", self.cni_conf(node), node=node.netns, container_id=cid,
                     netns=self.spaces.path(ns), extra_env=self.cni_env(node))
        if out.code:
            raise RuntimeError(f"ADD on node {node.index} failed: {out.stdout}{out.stderr}")
        pod = Pod(ns, node, cid, out.json["ips"][0]["address"].split("/")[0])
        node.pods.append(pod)
        return pod

    def del_pod(self, pod: Pod) -> None:
        invoke("DEL", self.cni_conf(pod.node), node=pod.node.netns,
               container_id=pod.container_id, netns=self.spaces.path(pod.netns),
               extra_env=self.cni_env(pod.node))
        pod.node.pods.remove(pod)
        self.spaces.remove(pod.netns)

    # -- teardown -----------------------------------------------------------------------

    def keep(self, state_dir: Path) -> Path:
        """Leave everything running past this process: record it in `state_dir` for
        `lab.kept.remove_all`, and only then stop the context manager from tearing down."""
        assert self.etcd is not None and self.etcd.pid is not None
        pids = [n.proc.pid for n in self.nodes if n.proc and n.proc.poll() is None]
        record = KeptCluster(self.net_name, str(self.workdir), tuple(self.spaces.made),
                             tuple(Process.of(pid) for pid in [*pids, self.etcd.pid]))
        path = record.save(state_dir)
        self.kept = True
        return path

    def teardown(self) -> None:
        for node in self.nodes:
            try:
                self.stop_node(node)
            except Exception:  # noqa: BLE001 (tear down the rest regardless)
                pass
        if self.etcd is not None:
            self.etcd.stop()
        self.spaces.cleanup()
        shutil.rmtree(self.workdir, ignore_errors=True)
