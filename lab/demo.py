"""`make demo`: one node in a network namespace, pods wired by the pyflannel CNI plugin.

Until flanneld exists this shows the plugin alone: a node namespace with a subnet
file as flanneld would write it, two pod namespaces added through the installed
`pyflannel` executable, pings pod-to-pod and pod-to-node, then DEL and teardown.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from lab.netns import Namespaces, unique
from lab.plugin import invoke, ping, subnet_env_text


def main() -> int:
    spaces = Namespaces()
    workdir = Path(tempfile.mkdtemp(prefix="pyflannel-demo-"))
    ok = True
    try:
        node = spaces.make("pfdemo")
        (workdir / "subnet.env").write_text(subnet_env_text())
        conf = {"cniVersion": "1.1.0", "name": unique("demo"), "type": "pyflannel",
                "subnetFile": str(workdir / "subnet.env"), "dataDir": str(workdir / "data")}
        print(f"node namespace {node}; subnet file:\n{subnet_env_text()}")
        pods: dict[str, str] = {}
        for i in range(2):
            pod = spaces.make("pfpod")
            out = invoke("ADD", conf, node=node, container_id=f"demo{i}",
                         netns=spaces.path(pod))
            if out.code:
                print(f"ADD failed: {out.stdout}{out.stderr}", file=sys.stderr)
                return 1
            pods[pod] = out.json["ips"][0]["address"].split("/")[0]
            print(f"ADD {pod}: {json.dumps(out.json['ips'])}")
        (a, ip_a), (b, ip_b) = pods.items()
        for src, dst, label in ((a, ip_b, "pod -> pod"), (b, ip_a, "pod -> pod"),
                                (a, "10.244.1.1", "pod -> node bridge")):
            reached = ping(src, dst)
            ok &= reached
            print(f"{label:20} {src} -> {dst}: {'ok' if reached else 'FAILED'}")
        for i, pod in enumerate(pods):
            out = invoke("DEL", conf, node=node, container_id=f"demo{i}",
                         netns=spaces.path(pod))
            print(f"DEL {pod}: exit {out.code}")
            ok &= out.code == 0
    finally:
        spaces.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
        print("torn down: namespaces and state removed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
