"""The `pyflannel` executable: the runtime's entry point (CNI_* env + config on stdin)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import traceback

from .core import version
from .core.errors import INTERNAL, IO_FAILURE, CNIError

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
"""

# CNI command -> module under cni.commands (imported only when run).
MODULES = {"ADD": "add", "DEL": "delete", "CHECK": "check", "STATUS": "status", "GC": "gc"}


def _load_pyroute2_lightly() -> None:
    """Register pyroute2 as a bare package so its __init__, which imports every API it has
    (NDB, IPDB, conntrack, ipset, ...), does not run: the commands import only the
    rtnetlink modules they use. This saves about a third of the plugin's start-up (see
    bench/). Done only here, in the plugin's own process."""
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is not None:
        sys.modules["pyroute2"] = importlib.util.module_from_spec(spec)


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _execute(env: dict[str, str], stdin) -> int:
    reply_version = version.CURRENT
    if env.get("CNI_COMMAND") == "VERSION":
        _emit({"cniVersion": version.CURRENT, "supportedVersions": list(version.SUPPORTED)})
        return 0
    from .core import netconf
    from .core.skel import parse_environment

    try:
        inv = parse_environment(env)
        data = stdin.read()
        raw = netconf.decode(data)
        if netconf.cni_version_of(raw) in version.SUPPORTED:
            reply_version = netconf.cni_version_of(raw)
        conf = netconf.parse(data)
        version.require_command_allowed(inv.command, conf.cni_version)
        _load_pyroute2_lightly()
        module = importlib.import_module(f"cni.commands.{MODULES[inv.command]}")
        out = module.run(inv, conf)
        if out is not None:
            _emit(out)
        return 0
    except CNIError as e:
        error = e
    except OSError as e:
        error = CNIError(IO_FAILURE, f"I/O failure: {e.strerror or e}", str(e.filename or ""))
    except Exception as e:  # noqa: BLE001 - every failure must reach the runtime as JSON
        traceback.print_exc(file=sys.stderr)
        error = CNIError(INTERNAL, f"internal error: {type(e).__name__}: {e}")
    _emit(error.to_dict(reply_version))
    return 1


def main() -> int:
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        sys.stdout.write(USAGE)
        return 0
    if "--version" in sys.argv[1:]:
        sys.stdout.write(ABOUT + "\n")
        return 0
    if not os.environ.get("CNI_COMMAND"):
        sys.stderr.write(USAGE)
        return 0
    return _execute(dict(os.environ), sys.stdin.buffer)


if __name__ == "__main__":
    sys.exit(main())
