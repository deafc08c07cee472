"""Masquerading for a pod's traffic leaving the cluster network, through iptables.

Per attachment, in table nat: chain `PYFL-…` with `-d <cluster network> -j ACCEPT` and
`! -d 224.0.0.0/4 -j MASQUERADE`, jumped to from POSTROUTING by `-s <pod ip>`. Unlike
the bridge plugin, traffic to every pod of the cluster (not just this node's) is
exempt, so pod-to-pod traffic across nodes keeps its source address.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from functools import partial
from ipaddress import IPv4Address, IPv4Network

from ..core.errors import KERNEL_FAILURE, CNIError

MULTICAST = "224.0.0.0/4"
PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None).prctl     # resolved here, so the forked child only calls it


def _die_with(parent: int) -> None:
    """In the child, before exec: if the plugin is killed mid-call, iptables goes too,
    rather than changing the rules after a DEL or GC has already looked at them."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:      # the parent died before prctl took effect
        os._exit(1)


def _run(cmd: list[str], stdin: str | None = None) -> str:
    """Run iptables. Only a run that changes rules (`iptables-restore`, fed on stdin) is
    tied to the plugin's life: that costs a fork instead of a vfork (bench/README.md)."""
    tie = {"preexec_fn": partial(_die_with, os.getpid())} if stdin is not None else {}
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60,
                              **tie)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CNIError(KERNEL_FAILURE, f"cannot run {cmd[0]}", str(e)) from None
    if proc.returncode != 0:
        raise CNIError(KERNEL_FAILURE, f"{' '.join(cmd[:3])} failed", proc.stderr.strip())
    return proc.stdout


def rules_for(chain: str, ip: IPv4Address, exempt: tuple[IPv4Network, ...],
              comment: str) -> str:
    """The iptables-restore payload that sets the chain up. `comment` holds only
    characters of network names and container IDs, so it needs no escaping."""
    c = f'-m comment --comment "{comment}"'
    lines = ["*nat", f":{chain} - [0:0]"]
    lines += [f"-A {chain} -d {net} {c} -j ACCEPT" for net in exempt]
    lines += [f"-A {chain} ! -d {MULTICAST} {c} -j MASQUERADE",
              f"-A POSTROUTING -s {ip}/32 {c} -j {chain}", "COMMIT", ""]
    return "\n".join(lines)


def setup(chain: str, ip: IPv4Address, exempt: tuple[IPv4Network, ...], comment: str) -> None:
    _run(["iptables-restore", "--noflush", "-w", "10"], rules_for(chain, ip, exempt, comment))


def _removal(chain: str, listing: str) -> str:
    jumps = [line for line in listing.splitlines()
             if line.startswith("-A POSTROUTING ") and line.endswith(f"-j {chain}")]
    if not jumps and f"-N {chain}" not in listing.splitlines():
        return ""
    lines = ["*nat"] + ["-D" + line[2:] for line in jumps]
    if f"-N {chain}" in listing.splitlines():
        lines += [f"-F {chain}", f"-X {chain}"]
    return "\n".join(lines + ["COMMIT", ""])


def teardown(chain: str) -> None:
    """Remove the chain and every POSTROUTING jump to it; nothing there is fine."""
    payload = _removal(chain, _run(["iptables", "-w", "10", "-t", "nat", "-S"]))
    if payload:
        _run(["iptables-restore", "--noflush", "-w", "10"], payload)


def present(chain: str, ip: IPv4Address) -> bool:
    listing = _run(["iptables", "-w", "10", "-t", "nat", "-S"]).splitlines()
    return f"-N {chain}" in listing and any(
        line.startswith(f"-A POSTROUTING -s {ip}/32") and line.endswith(f"-j {chain}")
        for line in listing)
