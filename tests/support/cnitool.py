"""Build our libcni-based cnitool (tests/cnitool) offline and run it inside a node netns."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from lab.netns import NETNS_DIR
from lab.plugin import Outcome, cni_path

SOURCE_DIR = Path(__file__).resolve().parent.parent / "cnitool"
BINARY = SOURCE_DIR / "bin" / "cnitool"
DEBIAN_GOPATH = "/usr/share/gocode"  # golang-github-appc-cni-dev installs libcni here


def build_cnitool(timeout: float = 300) -> Path:
    """Build tests/cnitool/bin/cnitool in GOPATH mode (no network) unless it is up to date."""
    source = SOURCE_DIR / "main.go"
    if BINARY.exists() and BINARY.stat().st_mtime >= source.stat().st_mtime:
        return BINARY
    BINARY.parent.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GO", "CGO_"))}
    env.update({"GO111MODULE": "off", "GOPATH": DEBIAN_GOPATH, "GOFLAGS": "",
                "GOPROXY": "off", "CGO_ENABLED": "0",
                "GOCACHE": str(BINARY.parent / ".gocache")})
    partial = BINARY.with_name(f"cnitool.{os.getpid()}.partial")  # concurrent sessions
    proc = subprocess.run(["go", "build", "-o", str(partial), "main.go"], cwd=SOURCE_DIR,
                          env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"building cnitool failed:\n{proc.stderr}")
    partial.replace(BINARY)
    return BINARY


def run_cnitool(binary: Path, command: str, net: str, pod: str, *, node: str, conf_dir: Path,
                cache_dir: Path, cap_args: dict | None = None, container_id: str = "",
                ifname: str = "eth0", timeout: float = 60) -> Outcome:
    """`cnitool <command> <net> /run/netns/<pod>` run in netns `node` with its state in temp dirs.

    An empty `container_id` lets cnitool derive one from the netns path, as upstream does.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "CAP_ARGS"))}
    env.update({"NETCONFPATH": str(conf_dir), "CNI_PATH": cni_path(),
                "CNI_CACHE_DIR": str(cache_dir), "CNI_IFNAME": ifname,
                "CNI_CONTAINERID": container_id})
    if cap_args is not None:
        env["CAP_ARGS"] = json.dumps(cap_args)
    cmd = ["ip", "netns", "exec", node, str(binary), command, net, os.path.join(NETNS_DIR, pod)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


if __name__ == "__main__":  # `make cnitool`
    print(build_cnitool())
