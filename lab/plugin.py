"""Run the pyflannel CNI executable exactly as a runtime does: env + stdin, in a node netns."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from typing import Any

from flanneld.core import subnet_file
from lab.netns import run

SPEC_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")


def installed(name: str, env_var: str) -> str:
    """An executable under test: $<env_var>, else `name` installed beside python."""
    explicit = os.environ.get(env_var)
    if explicit:
        return explicit
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.path.exists(beside) else shutil.which(name) or name


def plugin_binary() -> str:
    """The CNI executable under test: $PYFLANNEL_CNI_BIN, else the installed `pyflannel`."""
    return installed("pyflannel", "PYFLANNEL_CNI_BIN")


REFERENCE_CNI_DIR = "/usr/lib/cni"


def cni_path() -> str:
    """CNI_PATH holding pyflannel and the reference plugins."""
    return f"{os.path.dirname(plugin_binary())}:{REFERENCE_CNI_DIR}"


def subnet_env_text(network: str = "10.244.0.0/16", subnet: str = "10.244.1.1/24",
                    mtu: int = 1472, ipmasq: bool = False) -> str:
    """The subnet file flanneld writes, from flanneld's own renderer: `network` is
    FLANNEL_NETWORK, `subnet` FLANNEL_SUBNET as flanneld writes it (the node subnet's first
    address with its prefix; anything else is refused, since flanneld never writes it)."""
    gateway = IPv4Interface(subnet)
    node_subnet = gateway.network
    if gateway.ip != node_subnet.network_address + 1:
        raise ValueError(f"FLANNEL_SUBNET={subnet}: flanneld writes the first address of "
                         f"{node_subnet} there")
    return subnet_file.render(IPv4Network(network), node_subnet, mtu, ipmasq)


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    elapsed_ns: int = 0     # the plugin process's wall time, from start to exit

    @property
    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.stdout)
        return out


DEFAULT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"    # where the plugin finds iptables


def invoke(command: str, conf: dict[str, Any] | str | bytes, *, node: str | None,
           container_id: str = "", netns: str = "", ifname: str = "eth0",
           extra_env: dict[str, str] | None = None,
           timeout: float = 60, plugin: str | None = None,
           path: str | None = None) -> Outcome:
    """One plugin run in netns `node` (None: the current one, for pure error paths only, or
    for a caller that has entered the node's namespace itself). `plugin` is the executable
    (default: the one under test) and `path` its CNI_PATH (default: `cni_path()`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("PYFLANNEL_SOCKET", "")   # cold, unless a test serves a warm path
    env.update({"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns,
                "CNI_IFNAME": ifname, "CNI_PATH": path if path is not None else cni_path()})
    env.update(extra_env or {})
    data = conf if isinstance(conf, (str, bytes)) else json.dumps(conf)
    if isinstance(data, str):
        data = data.encode()
    cmd = [plugin or plugin_binary()]
    if node:
        cmd = ["ip", "netns", "exec", node, *cmd]
    start = time.perf_counter_ns()
    proc = subprocess.run(cmd, input=data, capture_output=True, env=env, timeout=timeout)
    elapsed = time.perf_counter_ns() - start
    return Outcome(proc.returncode, proc.stdout.decode(), proc.stderr.decode(), elapsed)


def links(netns: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(run("ip", "-j", "-d", "link", "show",
                                               netns=netns).stdout)
    return out


def addresses(netns: str, dev: str) -> list[str]:
    out = json.loads(run("ip", "-j", "-4", "addr", "show", "dev", dev, netns=netns).stdout)
    return [f"{a['local']}/{a['prefixlen']}" for entry in out for a in entry["addr_info"]]


def ping(netns: str, target: str, count: int = 2) -> bool:
    res = run("ping", "-c", str(count), "-i", "0.2", "-W", "2", target, netns=netns, check=False)
    return res.returncode == 0
