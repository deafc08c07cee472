"""The `pyflannel` executable: the runtime's entry point (CNI_* env + config on stdin)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import signal
import sys
import traceback

from .core import version
from .core.errors import (
    DECODING_FAILURE,
    INTERNAL,
    INVALID_ENVIRONMENT,
    IO_FAILURE,
    TRY_AGAIN_LATER,
    CNIError,
)

TYPE_CHECKING = False      # typing is not imported: VERSION and errors stay light
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, BinaryIO

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
"""

# CNI command -> module under cni.commands (imported only when run).
MODULES = {"ADD": "add", "DEL": "delete", "CHECK": "check", "STATUS": "status", "GC": "gc"}
CONFIG_LIMIT = 4 << 20      # bytes of stdin: a GC list of every pod on a node fits easily
DEFAULT_TIMEOUT = 60.0      # seconds; PYFLANNEL_TIMEOUT
GRACE = 5.0                 # seconds the rollback may take past the timeout


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


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _timeout(env: dict[str, str]) -> float:
    text = env.get("PYFLANNEL_TIMEOUT", "")
    try:
        seconds = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 3600:
        raise CNIError(INVALID_ENVIRONMENT, "invalid PYFLANNEL_TIMEOUT",
                       f"{text[:40]!r} is not a number of seconds in (0, 3600]")
    return seconds


def _arm_deadline(seconds: float, reply: list[str]) -> None:
    """Past `seconds` the call fails with code 11 wherever it is (a blocking read, a lock
    held by a stuck process): the exception unwinds through ADD's rollback. Should even
    that hang, the error is written GRACE seconds later and the process exits."""
    def expire(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGALRM, give_up)
        signal.setitimer(signal.ITIMER_REAL, GRACE)
        where = f" (in {frame.f_code.co_name})" if frame is not None else ""
        raise CNIError(TRY_AGAIN_LATER, f"pyflannel gave up after {seconds:g} s{where}",
                       "set PYFLANNEL_TIMEOUT for a longer bound")

    def give_up(signum: int, frame: FrameType | None) -> None:
        _emit(CNIError(TRY_AGAIN_LATER, f"pyflannel gave up after {seconds + GRACE:g} s",
                       "the rollback did not finish").to_dict(reply[0]))
        os._exit(1)

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _read_config(stdin: BinaryIO) -> bytes:
    data = stdin.read(CONFIG_LIMIT + 1)
    if len(data) > CONFIG_LIMIT:
        raise CNIError(DECODING_FAILURE, "error parsing network config",
                       f"more than {CONFIG_LIMIT} bytes on stdin")
    return data


def _execute(env: dict[str, str], stdin: BinaryIO) -> int:
    reply = [version.CURRENT]     # the version errors are given in, once the config says
    if env.get("CNI_COMMAND") == "VERSION":
        _emit({"cniVersion": version.CURRENT, "supportedVersions": list(version.SUPPORTED)})
        return 0
    from .core import netconf
    from .core.skel import parse_environment

    try:
        _arm_deadline(_timeout(env), reply)
        inv = parse_environment(env)
        data = _read_config(stdin)
        raw = netconf.decode(data)
        if netconf.cni_version_of(raw) in version.SUPPORTED:
            reply[0] = netconf.cni_version_of(raw)
        conf = netconf.parse(data)
        version.require_command_allowed(inv.command, conf.cni_version)
        _load_pyroute2_lightly()
        module = importlib.import_module(f"cni.commands.{MODULES[inv.command]}")
        out = module.run(inv, conf)
        signal.setitimer(signal.ITIMER_REAL, 0)
        if out is not None:
            _emit(out)
        return 0
    except CNIError as e:
        error = e
    except OSError as e:
        error = CNIError(IO_FAILURE, f"I/O failure: {e.strerror or e}", str(e.filename or ""))
    except MemoryError:
        error = CNIError(IO_FAILURE, "out of memory", "an input is too large")
    except Exception as e:  # noqa: BLE001 - every failure must reach the runtime as JSON
        traceback.print_exc(file=sys.stderr)
        error = CNIError(INTERNAL, f"internal error: {type(e).__name__}: {e}")
    signal.setitimer(signal.ITIMER_REAL, 0)
    _emit(error.to_dict(reply[0]))
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
