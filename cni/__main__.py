"""The `pyflannel` executable: the runtime's entry point (CNI_* env + config on stdin).

Only `os` and `sys` are loaded here (both are loaded before any module runs), so that
a call relayed to the node's flanneld (`client`) starts as fast as Python can. The call
itself (`call`) is imported only when this process does it: without a daemon, or when
the daemon leaves it to the plugin.
"""

from __future__ import annotations

import os
import sys

from .core import version

TYPE_CHECKING = False      # typing is not imported: the relay stays light
if TYPE_CHECKING:
    from typing import BinaryIO

ABOUT = "pyflannel CNI plugin 0.1.0"
USAGE = f"""{ABOUT}
CNI protocol versions supported: {", ".join(version.SUPPORTED)}

Run by a container runtime (kubelet/containerd, CRI-O, cnitool) with CNI_COMMAND
(ADD, DEL, CHECK, STATUS, GC, VERSION), CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME and
the network configuration as JSON on stdin. Configuration keys beyond the spec's:
  subnetFile        flanneld's subnet file        [/run/flannel/subnet.env]
  dataDir           IP reservations and records   [/var/lib/cni/pyflannel]
  bridge            node bridge                   [cni0]
  mtu               pod and bridge MTU            [FLANNEL_MTU]
  hairpinMode       hairpin on the bridge port    [true]
  isDefaultGateway  default route via the bridge  [true]
  ipMasq            masquerade leaving traffic    [not FLANNEL_IPMASQ]
A specific IP or MAC is taken from CNI_ARGS IP=/MAC=, args.cni.ips/mac or
runtimeConfig.ips/mac (capabilities "ips" and "mac").

Every call answers within PYFLANNEL_TIMEOUT seconds [60]: past that it rolls back
and fails with code 11 (try again later).

When flanneld runs on the node, the call is handed to its CNI worker over the unix
socket PYFLANNEL_SOCKET [/run/flannel/cni.sock], which does the same work without
the start-up cost; without it, the plugin does the call itself.
  pyflannel --serve PATH   serve calls on PATH (flanneld starts this; root only)
"""



def _version_json() -> str:
    """VERSION's answer, without the json module: every string in it is a plain literal."""
    versions = ", ".join(f'"{v}"' for v in version.SUPPORTED)
    return f'{{"cniVersion": "{version.CURRENT}", "supportedVersions": [{versions}]}}\n'


def _cold(env: dict[str, str], stdin: BinaryIO) -> int:
    from .call import execute, to_stdout
    return execute(env, stdin, to_stdout)


def _run(env: dict[str, str]) -> int:
    if env.get("CNI_COMMAND") == "VERSION":
        sys.stdout.write(_version_json())
        return 0
    from . import client
    relayed = client.relay_call(env, sys.stdin.buffer)
    if relayed.code is not None:
        return relayed.code
    return _cold(env, relayed.stdin)


def _exit_now(code: int) -> int:
    """End the call's process without the interpreter's teardown (every module's globals
    freed one by one: about 3 ms of a relayed call, measured, bench/README.md). The answer
    is all that can be left in a buffer: the call's own files are closed by then."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 1        # as the interpreter's exit would report it
    os._exit(code)


def main() -> int:
    args = sys.argv[1:]
    if any(a in ("-h", "--help") for a in args):
        sys.stdout.write(USAGE)
        return 0
    if "--version" in args:
        sys.stdout.write(ABOUT + "\n")
        return 0
    if args[:1] == ["--serve"]:
        from .serve import main as serve
        return serve(args[1:])
    if not os.environ.get("CNI_COMMAND"):
        sys.stderr.write(USAGE)
        return 0
    return _exit_now(_run(dict(os.environ)))


if __name__ == "__main__":
    sys.exit(main())
