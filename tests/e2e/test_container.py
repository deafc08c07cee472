"""flanneld with no more privilege than manifests/pyflannel.yml gives its container: a
runtime's default capabilities plus the manifest's `add`, /proc/sys read-only (as for
every container that is not privileged), the network config from the ConfigMap's
net-conf.json through --net-config-path, and the DaemonSet's other flags. Two nodes come
up, write the config to etcd and carry pod traffic."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from lab.cluster import Cluster, flanneld_binary
from lab.plugin import ping
from tests.manifests.manifest import config_data, main_container

pytestmark = pytest.mark.integration

# CRI-O's default capabilities, a subset of containerd's (which adds NET_RAW, MKNOD,
# SETFCAP, SYS_CHROOT, AUDIT_WRITE): whatever else flanneld needs, the manifest must add.
RUNTIME_DEFAULT_CAPS = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "SETGID", "SETUID",
                        "SETPCAP", "NET_BIND_SERVICE", "KILL")
CAP_BITS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6,
            "SETUID": 7, "SETPCAP": 8, "NET_BIND_SERVICE": 10, "NET_ADMIN": 12, "NET_RAW": 13,
            "SYS_ADMIN": 21}


def container_caps() -> tuple[str, ...]:
    return RUNTIME_DEFAULT_CAPS + tuple(main_container()["securityContext"]["capabilities"]
                                        ["add"])


def container_wrapper(folder: Path) -> Path:
    """A script that runs flanneld as the container would: a mount namespace of its own
    with /proc/sys read-only, and only the container's capabilities."""
    bounding = ",".join(["-all"] + [f"+{cap.lower()}" for cap in container_caps()])
    inner = ("mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && "
             f'exec setpriv --bounding-set={bounding} {shlex.quote(flanneld_binary())} "$@"')
    script = folder / "flanneld-in-container"
    script.write_text("#!/bin/sh\n"
                      f"exec unshare --mount --propagation private sh -c {shlex.quote(inner)}"
                      ' sh "$@"\n')
    script.chmod(0o755)
    return script


def daemonset_args(net_conf: Path) -> tuple[str, ...]:
    """The DaemonSet's flags for the lab: its etcd is plain http (no TLS files) and the
    config file is the ConfigMap's, at a path of the test's."""
    args = []
    for arg in main_container()["args"]:
        flag = arg.split("=", 1)[0]
        if flag in ("--etcd-cafile", "--etcd-certfile", "--etcd-keyfile"):
            continue
        args.append(f"--net-config-path={net_conf}" if flag == "--net-config-path" else arg)
    return tuple(args)


def test_flanneld_runs_with_the_containers_privileges(tmp_path: Path, monkeypatch) -> None:
    net_conf = tmp_path / "net-conf.json"
    net_conf.write_text(config_data()["net-conf.json"])
    monkeypatch.setenv("PYFLANNEL_FLANNELD_BIN", str(container_wrapper(tmp_path)))
    with Cluster(nodes=2, write_config=False, underlay=88,
                 extra_args=daemonset_args(net_conf)) as c:
        stored = c.etcd.etcdctl("get", f"{c.prefix}/config", "--print-value-only")
        assert json.loads(stored) == json.loads(net_conf.read_text())
        for node in c.nodes:
            assert "disable_ipv6 is read-only" in node.log(), node.log()
            assert node.subnet_file.read_text().endswith("FLANNEL_IPMASQ=true\n")
            status = Path(f"/proc/{node.proc.pid}/status").read_text()
            assert f"CapEff:\t{sum(1 << CAP_BITS[cap] for cap in container_caps()):016x}\n" \
                in status
        a, b = (c.add_pod(node) for node in c.nodes)
        assert ping(a.netns, b.ip), "pod to pod across nodes"
